"""PMR (Fan et al. CVPR 2023; M-modality extension): prototypes are class means (per label and class
for multi-label), refreshed with momentum; prototype logits are negative distances; coefficients and
the loss follow the formula; the refresh in the trainer uses the training rows only."""

from __future__ import annotations

import math

import pytest
import torch

from omnifuse.methods.base import Batch, ModelSpec
from omnifuse.methods.pmr import class_means, label_grid, pmr_coefficients, prototype_logits
from omnifuse.methods.registry import build_method
from omnifuse.nn.task import Task
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train.config import TrainConfig
from omnifuse.train.data import load_run_data
from omnifuse.train.loop import FitContext

SHAPES = {"ehr": (6, 5), "cxr": (1, 12), "rep": (5, 10)}
SMALL = {"d": 8, "ehr_hidden": 8, "attn_hidden": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def spec(kind="binary", n_out=1, mods=("ehr", "cxr", "rep")):
    return ModelSpec(tuple(mods), tuple(mods), {m: SHAPES[m] for m in mods}, kind, n_out)


def batch_for(sp, n=24, seed=0, observed=None):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, *sp.shapes[m], generator=g) for m in sp.modalities}
    mask = {m: torch.ones(n, sp.shapes[m][0], dtype=torch.bool) for m in sp.modalities}
    if sp.kind == "multiclass":
        y = torch.randint(0, sp.n_outputs, (n,), generator=g)
    else:
        y = torch.randint(0, 2, (n, sp.n_outputs), generator=g).float()
    obs = torch.ones(n, len(sp.modalities), dtype=torch.bool) if observed is None else observed
    return Batch(x=x, mask=mask, observed=obs, y=y)


def test_class_means_per_class_and_per_label():
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [0.0, 1.0]])
    # multi-class (one "label", 3 classes; class 2 absent)
    means, counts = class_means(z, torch.tensor([[0], [1], [0], [1]]), 3)
    torch.testing.assert_close(means[0], torch.tensor([[3.0, 2.0], [1.5, 1.5], [0.0, 0.0]]))
    assert counts[0].tolist() == [2, 2, 0]
    # multi-label: per label j, class 0 and class 1 means
    labels = label_grid(Task("multilabel", 2), torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]))
    means, counts = class_means(z, labels, 2)
    torch.testing.assert_close(means[0, 1], z[:2].mean(0))
    torch.testing.assert_close(means[0, 0], z[2:].mean(0))
    torch.testing.assert_close(means[1, 1], z[1:3].mean(0))
    torch.testing.assert_close(means[1, 0], z[[0, 3]].mean(0))
    assert counts.tolist() == [[2, 2], [2, 2]]


def test_prototype_logits_are_negative_euclidean_distances():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, generator=g)
    protos = torch.randn(3, 2, 4, generator=g)  # (W=3 labels, K=2 classes, d)
    logits = prototype_logits(z, protos)
    assert logits.shape == (5, 3, 2) and (logits < 0).all()
    for w in range(3):
        torch.testing.assert_close(logits[:, w], -torch.cdist(z, protos[w]))


def test_coefficients_follow_the_formula():
    s = torch.tensor([0.5, 0.9, 0.6, 0.3], dtype=torch.float64)
    beta, dom = pmr_coefficients(s, torch.ones(4, dtype=torch.bool), alpha=1.0)
    assert dom == 1
    expected = [min(max(0.9 / x - 1, 0.0), 1.0) for x in (0.5, 0.9, 0.6, 0.3)]
    expected[1] = 0.0  # the dominant modality gets no prototypical CE
    assert beta.tolist() == pytest.approx(expected)
    assert beta[3] == 1.0  # clipped at 1
    beta2, _ = pmr_coefficients(s, torch.ones(4, dtype=torch.bool), alpha=0.5)
    assert beta2.tolist() == pytest.approx([0.5 * e for e in expected])
    # an unobserved modality neither dominates nor gets a coefficient
    beta3, dom3 = pmr_coefficients(s, torch.tensor([True, False, True, True]), alpha=1.0)
    assert dom3 == 2 and beta3[1] == 0 and beta3[0] == pytest.approx(0.6 / 0.5 - 1)


@pytest.mark.parametrize("kind,n_out", [("binary", 1), ("multilabel", 3), ("multiclass", 3)])
def test_prototypes_are_class_means_refreshed_with_momentum(kind, n_out):
    sp = spec(kind, n_out)
    torch.manual_seed(0)
    model = build_method("pmr", sp, {**SMALL, "momentum": 0.2}).eval()
    b1, b2 = batch_for(sp, seed=1), batch_for(sp, seed=2)
    obs = torch.ones(len(b1), 3, dtype=torch.bool)
    obs[:6, 1] = False  # cxr missing for six samples: excluded from its prototypes
    with torch.no_grad():
        z1 = model.encoders(b1.x, b1.mask)
        z2 = model.encoders(b2.x, b2.mask)
    labels1 = label_grid(model.task, b1.y)
    first = model.compute_prototypes(z1, obs, labels1)
    k = 3 if kind == "multiclass" else 2
    for i in range(3):
        rows = obs[:, i]
        means, counts = class_means(z1[rows, i], labels1[rows], k)
        have = counts > 0
        torch.testing.assert_close(first[i][have], means[have])
    model.prototypes.copy_(first)
    model.has_prototypes = True
    second = model.compute_prototypes(z2, torch.ones_like(obs), label_grid(model.task, b2.y))
    means2, counts2 = class_means(z2[:, 0], label_grid(model.task, b2.y), k)
    have = counts2 > 0
    torch.testing.assert_close(second[0][have], (0.8 * means2 + 0.2 * first[0])[have])
    torch.testing.assert_close(second[0][~have], first[0][~have])  # absent class: previous prototype


def test_loss_is_ce_plus_weighted_pce_plus_entropy_regularisation():
    sp = spec("multilabel", 3)
    torch.manual_seed(0)
    model = build_method("pmr", sp, {**SMALL, "alpha": 1.0, "mu": 0.01, "er_epochs": 2}).train()
    batch = batch_for(sp, seed=3)
    with torch.no_grad():
        z = model.encoders(batch.x, batch.mask)
    model.prototypes.copy_(model.compute_prototypes(z, batch.observed, label_grid(model.task, batch.y)))
    model.has_prototypes = True
    for epoch, with_er in ((1, True), (3, False)):
        model.epoch = epoch
        out = model(batch)
        v = model.embed(batch).inputs
        ce = model.task.loss(out.logits, batch.y)
        labels = label_grid(model.task, batch.y)
        pce, scores, negent = [], [], []
        for i in range(3):
            logp = prototype_logits(v[:, i], model.prototypes[i]).log_softmax(-1)
            pce.append(-logp.gather(-1, labels.unsqueeze(-1)).mean())
            scores.append(float(logp.detach().gather(-1, labels.unsqueeze(-1)).exp().mean()))
            negent.append((logp.exp() * logp).sum(-1).mean())
        dom = max(range(3), key=lambda i: scores[i])
        beta = [0.0 if i == dom else min(max(scores[dom] / scores[i] - 1, 0), 1) for i in range(3)]
        expected = ce + sum(beta[i] * pce[i] for i in range(3))
        if with_er:
            expected = expected + 0.01 * negent[dom]
        assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert ("er" in out.losses) is with_er and out.extras["dominant"] == dom
        assert out.extras["beta"].tolist() == pytest.approx(beta, rel=1e-5)
        assert all(math.isfinite(float(x.detach())) for x in out.losses.values())
    model.eval()
    assert model(batch).loss is not None  # evaluation: the head's CE only
    torch.testing.assert_close(model(batch).loss, model.task.loss(model(batch).logits, batch.y))


def test_refresh_uses_a_subset_of_training_rows_and_all_of_them_at_fraction_one(tmp_path):
    cohort, caches = make_toy_run(
        tmp_path, ToySpec(n=120, kind="binary", shapes={"cxr": (1, 12), "rep": (5, 10)}, seed=0)
    )
    data = load_run_data(cohort, caches)
    idx = torch.arange(len(data))
    cfg = TrainConfig(batch_size=16)
    train_idx = idx[data.folds != 0]
    ctx = FitContext(data, {}, train_idx, idx[:0], idx[:0], idx[data.folds == 0], cfg,
                     torch.device("cpu"), torch.Generator().manual_seed(0))  # fmt: skip
    sp = ModelSpec(data.modalities, data.inputs, data.shapes, "binary", 1)
    torch.manual_seed(0)
    model = build_method("pmr", sp, {**SMALL, "proto_fraction": 1.0}).train()
    ctx.epoch = 1
    model.on_epoch_start(ctx)
    assert model.training and model.has_prototypes
    with torch.no_grad():
        b = data.batch(train_idx)
        z = model.encoders(b.x, b.mask)
    y = data.y[train_idx, 0].long()
    for i in range(2):
        for k in (0, 1):
            torch.testing.assert_close(model.prototypes[i, 0, k], z[y == k, i].mean(0), rtol=1e-4, atol=1e-5)
    # a tenth of the batches: prototypes from a subset, differing from the full means
    small = build_method("pmr", sp, {**SMALL, "proto_fraction": 0.1})
    small.load_state_dict(model.state_dict())
    small.on_epoch_start(ctx)
    assert not torch.allclose(small.prototypes, model.prototypes)
