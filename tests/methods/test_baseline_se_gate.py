"""SE-Gate: one gate per modality in (0, 1) from σ(W2 ReLU(W1 v)), the head reads [e_1 v^1; …; e_M v^M],
the reduction ratio sets the bottleneck, and the mean gates reach the history."""

from __future__ import annotations

import pytest
import torch

from omnifuse.methods.base import Batch, ModelSpec
from omnifuse.methods.registry import build_method

SHAPES = {"ehr": (6, 5), "cxr": (1, 12), "rep": (5, 10), "ct": (4, 7)}


pytestmark = pytest.mark.usefixtures("one_thread")


def make(mods, reduction=4, d=16):
    sp = ModelSpec(tuple(mods), tuple(mods), {m: SHAPES[m] for m in mods}, "binary", 1)
    torch.manual_seed(0)
    return build_method("se_gate", sp, {"d": d, "ehr_hidden": 8, "attn_hidden": 4, "reduction": reduction})


def batch_for(model, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    sp = model.spec
    x = {m: 3 * torch.randn(n, *sp.shapes[m], generator=g) for m in sp.modalities}
    mask = {m: torch.ones(n, sp.shapes[m][0], dtype=torch.bool) for m in sp.modalities}
    y = torch.randint(0, 2, (n, 1), generator=g).float()
    return Batch(x=x, mask=mask, observed=torch.ones(n, len(sp.modalities), dtype=torch.bool), y=y)


@pytest.mark.parametrize("mods", [("cxr", "rep"), ("ehr", "cxr", "rep"), ("ehr", "cxr", "rep", "ct")])
def test_one_gate_per_modality_in_the_open_unit_interval(mods):
    model = make(mods)
    batch = batch_for(model)
    out = model(batch)
    e = out.extras["gates"]
    assert e.shape == (len(batch), len(mods))
    assert ((e > 0) & (e < 1)).all()
    assert e.std(0).max() > 0  # sample-dependent gates
    # the gates are σ(W2 ReLU(W1 v)) of the concatenated embeddings
    v = model.embed(batch).inputs
    lin1, _, lin2, _ = model.squeeze
    manual = torch.sigmoid(lin2(torch.relu(lin1(v.flatten(1)))))
    torch.testing.assert_close(e, manual)
    assert lin1.out_features == len(mods) * 16 // 4 and lin2.out_features == len(mods)


def test_head_reads_the_gated_embeddings():
    model = make(("ehr", "cxr", "rep"))
    batch = batch_for(model)
    seen = []
    model.head.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    out = model(batch)
    v = model.embed(batch).inputs
    e = out.extras["gates"].detach()
    torch.testing.assert_close(seen[0], (v * e.unsqueeze(-1)).flatten(1).detach())
    # a gate closed by hand removes its modality from the prediction
    with torch.no_grad():
        model.squeeze[2].weight.zero_()
        model.squeeze[2].bias.copy_(torch.tensor([50.0, -50.0, 50.0]))
    changed = batch_for(model)
    changed.x["cxr"] = changed.x["cxr"] + 5.0
    torch.testing.assert_close(model(batch).logits, model(changed).logits, rtol=1e-5, atol=1e-5)


def test_reduction_ratio_and_history():
    wide, narrow = make(("cxr", "rep"), reduction=1), make(("cxr", "rep"), reduction=16)
    assert wide.squeeze[0].out_features == 32 and narrow.squeeze[0].out_features == 2
    model = make(("cxr", "rep"))
    model.train()
    model.on_epoch_start(None)
    outs = [model(batch_for(model, seed=s)).extras["gates"].detach() for s in (1, 2)]
    row = model.on_epoch_end(None)
    mean = torch.cat(outs).mean(0)
    assert row["gate_cxr"] == pytest.approx(float(mean[0])) and row["gate_rep"] == pytest.approx(
        float(mean[1])
    )
    with pytest.raises(ValueError, match="reduction must be >= 1"):
        make(("cxr", "rep"), reduction=0)
