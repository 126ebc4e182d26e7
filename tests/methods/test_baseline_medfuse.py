"""MedFuse: the LSTM reads only the observed modalities (a missing modality's input can be anything),
the variable-length reading equals pack_padded_sequence, and the projections / LSTM sizes."""

from __future__ import annotations

import itertools

import pytest
import torch

from omnifuse.methods.base import Batch, ModelSpec
from omnifuse.methods.medfuse import observed_first
from omnifuse.methods.registry import build_method

SHAPES = {"ehr": (6, 5), "cxr": (1, 12), "rep": (5, 10)}
SMALL = {"d": 8, "ehr_hidden": 8, "attn_hidden": 4, "proj_dim": 6, "lstm_hidden": 10}


pytestmark = pytest.mark.usefixtures("one_thread")


def model_and_batch(kind="binary", n_out=1, n=7):
    mods = ("ehr", "cxr", "rep")
    sp = ModelSpec(mods, mods, {m: SHAPES[m] for m in mods}, kind, n_out)
    torch.manual_seed(0)
    model = build_method("medfuse", sp, SMALL).eval()
    patterns = [c for r in (1, 2, 3) for c in itertools.combinations(range(3), r)]  # all 7
    observed = torch.zeros(n, 3, dtype=torch.bool)
    for i, pattern in enumerate(patterns[:n]):
        observed[i, list(pattern)] = True
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(n, *SHAPES[m], generator=g) for m in mods}
    mask = {m: torch.ones(n, SHAPES[m][0], dtype=torch.bool) for m in mods}
    return model, Batch(x=x, mask=mask, observed=observed)


@pytest.mark.parametrize("kind,n_out", [("binary", 1), ("multilabel", 4), ("multiclass", 3)])
def test_a_missing_modality_input_never_reaches_the_output(kind, n_out):
    model, batch = model_and_batch(kind, n_out)
    ref = model(batch).logits
    g = torch.Generator().manual_seed(9)
    changed = Batch(
        x={m: torch.where(batch.observed[:, j].view(-1, 1, 1), batch.x[m], 100 * torch.randn(
            batch.x[m].shape, generator=g)) for j, m in enumerate(model.modalities)},
        mask=batch.mask,
        observed=batch.observed,
    )  # fmt: skip
    out = model(changed).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # bitwise: the LSTM never sees it
    # ... whereas changing an observed modality changes the output
    observed_change = Batch(
        x={**batch.x, "ehr": batch.x["ehr"] + 1.0}, mask=batch.mask, observed=batch.observed
    )
    diff = (model(observed_change).logits - ref).abs().sum(-1)
    assert (diff[batch.observed[:, 0]] > 0).all() and (diff[~batch.observed[:, 0]] == 0).all()


def test_reading_equals_pack_padded_sequence():
    model, batch = model_and_batch()
    with torch.no_grad():
        v = model.encoders(batch.x, batch.mask)
        h = model.fuse(v, batch.observed)
        z = torch.stack([model.projections[m](v[:, i]) for i, m in enumerate(model.modalities)], 1)
        rows = []
        for i in range(len(batch)):  # the MedFuse way: each sample's observed modalities, in order
            rows.append(z[i, batch.observed[i]])
        lengths = torch.tensor([len(r) for r in rows])
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            padded, lengths, batch_first=True, enforce_sorted=False
        )
        _, (ht, _) = model.lstm(packed)
    torch.testing.assert_close(h, ht[-1], rtol=1e-5, atol=1e-6)
    assert model.lstm.hidden_size == 10 and model.lstm.input_size == 6 and model.lstm.num_layers == 1


def test_observed_first_keeps_the_order_and_zero_pads():
    x = torch.arange(12.0).view(2, 3, 2)
    obs = torch.tensor([[False, True, True], [True, False, True]])
    seq, lengths = observed_first(x, obs)
    assert lengths.tolist() == [2, 2]
    torch.testing.assert_close(seq[0], torch.tensor([[2.0, 3.0], [4.0, 5.0], [0.0, 0.0]]))
    torch.testing.assert_close(seq[1], torch.tensor([[6.0, 7.0], [10.0, 11.0], [0.0, 0.0]]))


def test_defaults_and_a_sample_without_inputs():
    from omnifuse.methods.medfuse import MedFuseConfig

    cfg = MedFuseConfig()
    assert cfg.lstm_hidden == 512 and cfg.proj_dim == 256
    model, batch = model_and_batch()
    batch.observed[0] = False  # possible at prediction time only: one all-zero step
    out = model(batch).logits
    assert torch.isfinite(out).all()
