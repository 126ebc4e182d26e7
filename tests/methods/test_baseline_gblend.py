"""Gradient-Blending (Wang et al. CVPR 2020): weights from planted training / held-out losses equal
w_k ∝ ΔG_k / ΔO_k² (normalised), the degenerate cases, the weighted loss, and the online / offline
schedules on the 8 % held-out slice inside the trainer."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from omnifuse.methods.base import Batch, ModelSpec
from omnifuse.methods.gblend import blend_weights
from omnifuse.methods.registry import build_method
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train

SMALL = [
    "train.threads=1",
    "train.batch_size=32",
    "method.d=16",
    "method.ehr_hidden=16",
    "method.attn_hidden=8",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_weights_from_planted_losses_equal_the_formula():
    # heads: ehr, cxr, fused
    train_start, held_start = t(0.70, 0.69, 0.68), t(0.71, 0.70, 0.70)
    train_end, held_end = t(0.40, 0.60, 0.30), t(0.55, 0.62, 0.45)
    w, dg, do = blend_weights(train_start, held_start, train_end, held_end, t(1, 1, 1) / 3)
    g = [0.71 - 0.55, 0.70 - 0.62, 0.70 - 0.45]
    o = [(0.55 - 0.40) - (0.71 - 0.70), (0.62 - 0.60) - (0.70 - 0.69), (0.45 - 0.30) - (0.70 - 0.68)]
    raw = [gk / ok**2 for gk, ok in zip(g, o, strict=True)]
    assert dg.tolist() == pytest.approx(g) and do.tolist() == pytest.approx(o)
    assert w.tolist() == pytest.approx([r / sum(raw) for r in raw])
    assert float(w.sum()) == pytest.approx(1.0)
    # the sign of ΔO does not matter (only ΔO² enters)
    w_neg, _, do_neg = blend_weights(t(0.5, 0.5), t(0.9, 0.9), t(0.5, 0.5), t(0.7, 0.8), t(0.5, 0.5))
    assert do_neg.tolist() == pytest.approx([-0.2, -0.1])
    assert w_neg.tolist() == pytest.approx([(0.2 / 0.04) / (0.2 / 0.04 + 0.1 / 0.01), (0.1 / 0.01) / 15.0])


def test_degenerate_cases():
    prev = t(0.2, 0.3, 0.5)
    # a head whose held-out loss got worse (ΔG <= 0) gets no weight
    w, dg, _ = blend_weights(t(0.7, 0.7, 0.7), t(0.7, 0.7, 0.7), t(0.5, 0.5, 0.5), t(0.6, 0.75, 0.6), prev)
    assert dg[1] < 0 and w[1] == 0 and w[0] == pytest.approx(0.5) and float(w.sum()) == pytest.approx(1)
    # no head generalised better: the previous weights are kept
    w, _, _ = blend_weights(t(0.7, 0.7, 0.7), t(0.7, 0.7, 0.7), t(0.5, 0.5, 0.5), t(0.8, 0.7, 0.9), prev)
    assert w.tolist() == prev.tolist()
    # |ΔO| is floored (no unbounded weight when the overfitting did not change)
    w, _, do = blend_weights(
        t(0.7, 0.7), t(0.7, 0.7), t(0.6, 0.5), t(0.6, 0.6), t(0.5, 0.5), min_delta_o=0.01
    )
    assert do[0] == pytest.approx(0.0)
    raw = [0.1 / 0.01**2, 0.1 / 0.1**2]
    assert w.tolist() == pytest.approx([raw[0] / sum(raw), raw[1] / sum(raw)])
    # a head with no held-out sample (NaN loss) gets no weight
    w, _, _ = blend_weights(t(0.7, 0.7), t(0.7, float("nan")), t(0.5, 0.5), t(0.6, float("nan")), t(0.5, 0.5))
    assert w.tolist() == [1.0, 0.0]


def test_loss_is_the_weighted_sum_of_head_losses():
    sp = ModelSpec(("cxr", "rep"), ("cxr", "rep"), {"cxr": (1, 6), "rep": (4, 5)}, "multiclass", 3)
    torch.manual_seed(0)
    model = build_method("gblend", sp, {"d": 8, "attn_hidden": 4})
    g = torch.Generator().manual_seed(0)
    n = 10
    observed = torch.ones(n, 2, dtype=torch.bool)
    observed[:4, 0] = False  # no cxr for four samples: they leave the cxr head's loss
    batch = Batch(
        x={"cxr": torch.randn(n, 1, 6, generator=g), "rep": torch.randn(n, 4, 5, generator=g)},
        mask={"cxr": torch.ones(n, 1, dtype=torch.bool), "rep": torch.ones(n, 4, dtype=torch.bool)},
        observed=observed,
        y=torch.randint(0, 3, (n,), generator=g),
    )
    model.weights.copy_(torch.tensor([0.2, 0.5, 0.3]))
    out = model(batch)
    l_cxr = model.task.loss(out.modality_logits[4:, 0], batch.y[4:])
    l_rep = model.task.loss(out.modality_logits[:, 1], batch.y)
    l_fused = model.task.loss(out.logits, batch.y)
    torch.testing.assert_close(out.loss, 0.2 * l_cxr + 0.5 * l_rep + 0.3 * l_fused)
    torch.testing.assert_close(out.losses["uni_cxr"], l_cxr)
    assert model.holdout_fraction == 0.08


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    spec = ToySpec(n=300, kind="binary", shapes={"cxr": (1, 16), "rep": (6, 12)}, seed=5, noise=0.5, latent=3)
    return make_toy_run(tmp_path_factory.mktemp("gb"), spec)


def test_online_weights_are_re_estimated_every_super_epoch_on_the_held_out_slice(toy, tmp_path):
    cohort, caches = toy
    summary = train(
        cohort, caches, "gblend", out_dir=tmp_path, folds=[0],
        overrides=[*SMALL, "train.max_epochs=4", "train.patience=10", "method.super_epoch=2"],
    )  # fmt: skip
    result = summary["results"][0]
    ctx = result.context
    n_pool = len(ctx.train_idx) + len(ctx.holdout_idx)
    assert 0.04 < len(ctx.holdout_idx) / n_pool < 0.12 and result.metrics["n_holdout"] == len(ctx.holdout_idx)
    hist = pl.read_parquet(tmp_path / "fold0" / "history.parquet")
    heads = ["cxr", "rep", "fused"]
    w = hist.select([f"gb_w_{h}" for h in heads]).to_numpy()
    assert w[0] == pytest.approx([1 / 3] * 3) and w[1] == pytest.approx([1 / 3] * 3)  # first super-epoch
    assert hist["gb_dG_cxr"].is_not_null().to_list() == [False, True, False, True]
    # the weights used in epoch 3 are the formula applied to the ΔG, ΔO recorded at the end of epoch 2
    dg = hist.select([f"gb_dG_{h}" for h in heads]).row(1)
    do = hist.select([f"gb_dO_{h}" for h in heads]).row(1)
    raw = [max(g, 0) / max(abs(o), 1e-3) ** 2 for g, o in zip(dg, do, strict=True)]
    assert w[2] == pytest.approx([r / sum(raw) for r in raw], rel=1e-5)
    assert w[2] == pytest.approx(w[3])  # unchanged within the super-epoch
    assert {"loss_uni_cxr", "loss_uni_rep", "loss_fused", "loss_total"} <= set(hist.columns)


def test_offline_weights_are_estimated_once(toy):
    cohort, caches = toy
    result = train(
        cohort, caches, "gblend", folds=[1],
        overrides=[*SMALL, "train.max_epochs=5", "train.patience=10", "method.super_epoch=1",
                   "method.mode=offline"],
    )["results"][0]  # fmt: skip
    hist = result.history
    assert [("gb_dG_fused" in row) for row in hist] == [True, False, False, False, False]
    later = [[row[f"gb_w_{h}"] for h in ("cxr", "rep", "fused")] for row in hist[1:]]
    assert all(row == pytest.approx(later[0]) for row in later)
    with pytest.raises(ValueError, match=r"gblend\.mode must be one of"):
        train(cohort, caches, "gblend", folds=[0], overrides=["method.mode=sometimes"])
