"""OGM-GE (Peng et al. CVPR 2022; M-modality extension): the split of the fused linear head, the
scores, ρ and k, the gradient modulation of the dominant modality's encoder weights, the GE noise and
the active epochs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from omnifuse.methods.base import Batch, ModelSpec
from omnifuse.methods.ogm_ge import modality_scores, ogm_coefficients
from omnifuse.methods.registry import build_method
from omnifuse.nn.task import Task

SHAPES = {"ehr": (6, 40), "cxr": (1, 12), "rep": (5, 10)}
SMALL = {"d": 16, "ehr_hidden": 32, "attn_hidden": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def spec(mods=("ehr", "cxr", "rep"), kind="binary", n_out=1):
    return ModelSpec(tuple(mods), tuple(mods), {m: SHAPES[m] for m in mods}, kind, n_out)


def batch_for(sp, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, *sp.shapes[m], generator=g) for m in sp.modalities}
    mask = {m: torch.ones(n, sp.shapes[m][0], dtype=torch.bool) for m in sp.modalities}
    return Batch(x=x, mask=mask, observed=torch.ones(n, len(sp.modalities), dtype=torch.bool))


def dominated_setup(ge: bool, alpha: float = 0.1):
    """A model and batch in which ehr dominates: labels agree with a confident ehr unimodal head, and
    the other modalities' parts of the fusion weight are tiny (their probabilities ≈ 0.5)."""
    sp = spec()
    torch.manual_seed(0)
    model = build_method("ogm_ge", sp, {**SMALL, "alpha": alpha, "ge": ge})
    d = SMALL["d"]
    with torch.no_grad():
        model.fusion.weight[:, :d] *= 300.0
        model.fusion.weight[:, d:] *= 0.05
        model.fusion.bias.zero_()
    batch = batch_for(sp)
    with torch.no_grad():
        f_ehr = model(batch).modality_logits[:, 0, 0]
    batch.y = (f_ehr > 0).float().unsqueeze(1)  # ehr is right on every sample
    return model, batch


def test_unimodal_logits_split_the_fused_linear_head():
    sp = spec()
    torch.manual_seed(1)
    model = build_method("ogm_ge", sp, SMALL)
    batch = batch_for(sp)
    out = model(batch)
    v = model.embed(batch).inputs
    d = SMALL["d"]
    w, b = model.fusion.weight, model.fusion.bias
    for i in range(3):
        manual = v[:, i] @ w[:, i * d : (i + 1) * d].T + b / 3
        torch.testing.assert_close(out.modality_logits[:, i], manual)
    torch.testing.assert_close(out.modality_logits.sum(1), out.logits)  # Σ_m f^m = W v + b


def test_scores_are_true_label_probabilities_per_kind():
    logits = torch.tensor([[[2.0], [-1.0]], [[0.5], [0.0]]])  # (B=2, M=2, C=1)
    y = torch.tensor([[1.0], [0.0]])
    s, valid = modality_scores(Task("binary", 1), logits, y, torch.ones(2, 2, dtype=torch.bool))
    sig = torch.sigmoid
    expected = [
        (sig(torch.tensor(2.0)) + 1 - sig(torch.tensor(0.5))) / 2,
        (sig(torch.tensor(-1.0)) + 0.5) / 2,
    ]
    assert s.tolist() == pytest.approx([float(e) for e in expected]) and valid.all()
    # multi-label: the mean over labels of the true label's probability
    ml = torch.tensor([[[1.0, -2.0]]])
    s_ml, _ = modality_scores(Task("multilabel", 2), ml, torch.tensor([[1.0, 1.0]]), torch.ones(1, 1).bool())
    assert float(s_ml[0]) == pytest.approx(float((sig(torch.tensor(1.0)) + sig(torch.tensor(-2.0))) / 2))
    # multi-class: softmax of the true class; a sample not observing m does not count
    mc = torch.tensor([[[1.0, 2.0, 0.0]], [[5.0, 0.0, 0.0]]])
    obs = torch.tensor([[True], [False]])
    s_mc, valid = modality_scores(Task("multiclass", 3), mc, torch.tensor([1, 0]), obs)
    assert float(s_mc[0]) == pytest.approx(float(torch.softmax(mc[0, 0], -1)[1]))
    _, none = modality_scores(Task("multiclass", 3), mc, torch.tensor([1, 0]), torch.zeros(2, 1).bool())
    assert not none.any()


def test_coefficients_follow_the_formula():
    s = torch.tensor([0.9, 0.5, 0.4], dtype=torch.float64)
    k, rho = ogm_coefficients(s, torch.ones(3, dtype=torch.bool), alpha=0.1)
    assert rho.tolist() == pytest.approx([0.9 / 0.45, 0.5 / 0.65, 0.4 / 0.7])
    assert k.tolist() == pytest.approx([1 - math.tanh(0.1 * 2.0), 1.0, 1.0])
    # M = 2 is the published rule: ρ^a = s^a / s^v
    k2, rho2 = ogm_coefficients(torch.tensor([0.8, 0.4], dtype=torch.float64), torch.ones(2).bool(), 0.8)
    assert rho2.tolist() == pytest.approx([2.0, 0.5]) and k2.tolist() == pytest.approx(
        [1 - math.tanh(1.6), 1]
    )
    # a modality absent from the batch is neither modulated nor a reference
    k3, rho3 = ogm_coefficients(s, torch.tensor([True, True, False]), alpha=0.1)
    assert rho3[0] == pytest.approx(0.9 / 0.5) and math.isnan(rho3[2]) and k3[2] == 1.0


def grads(model, modality):
    return [(p.dim(), p.grad.detach().clone()) for p in model.encoder_parameters(modality)]


def test_dominant_modality_weight_gradients_are_scaled_and_the_rest_untouched():
    model, batch = dominated_setup(ge=False)
    out = model(batch)
    out.loss.backward()
    before = {m: grads(model, m) for m in model.modalities}
    fusion_before = model.fusion.weight.grad.clone()
    with torch.no_grad():  # ρ and k by hand from the unimodal logits
        p = torch.sigmoid(out.modality_logits[..., 0])
        p_true = torch.where(batch.y > 0.5, p, 1 - p)
        s = p_true.mean(0)
        rho_ehr = float(s[0] / s[1:].mean())
    assert rho_ehr > 1.2
    k = 1 - math.tanh(0.1 * rho_ehr)
    model.after_backward(batch, out, SimpleNamespace(epoch=1, generator=torch.Generator().manual_seed(0)))
    scaled = 0
    for (dim, g0), p in zip(before["ehr"], model.encoder_parameters("ehr"), strict=True):
        if dim >= 2:  # non-bias weights: scaled by k
            torch.testing.assert_close(p.grad, g0 * k)
            scaled += int(g0.abs().sum() > 0)
        else:  # biases untouched
            torch.testing.assert_close(p.grad, g0, rtol=0, atol=0)
    assert scaled >= 3
    for m in ("cxr", "rep"):  # k = 1: untouched (no GE)
        for (_, g0), p in zip(before[m], model.encoder_parameters(m), strict=True):
            assert g0.abs().sum() > 0
            torch.testing.assert_close(p.grad, g0, rtol=0, atol=0)
    torch.testing.assert_close(
        model.fusion.weight.grad, fusion_before, rtol=0, atol=0
    )  # head never modulated
    row = model.on_epoch_end(None)
    assert row["ogm_k_ehr"] == pytest.approx(k) and row["ogm_k_cxr"] == 1.0
    assert row["ogm_rho_ehr"] == pytest.approx(rho_ehr, rel=1e-5)


def test_ge_noise_has_the_std_of_the_unscaled_gradient_and_is_seeded():
    model, batch = dominated_setup(ge=True)
    out = model(batch)
    out.loss.backward()
    lstm = model.encoders.encoders["ehr"].lstm
    g0 = lstm.weight_hh_l0.grad.clone()  # (4·32, 32): 4096 entries
    bias0 = lstm.bias_hh_l0.grad.clone()
    cxr_w = model.encoders.encoders["cxr"].net[0].weight
    cxr0 = cxr_w.grad.clone()
    model.after_backward(batch, out, SimpleNamespace(epoch=3, generator=torch.Generator().manual_seed(5)))
    k = model.on_epoch_end(None)["ogm_k_ehr"]
    assert k < 1
    noise = lstm.weight_hh_l0.grad - k * g0
    assert float(noise.std()) == pytest.approx(float(g0.std()) + 1e-8, rel=0.05)
    assert abs(float(noise.mean())) < 0.1 * float(g0.std())
    torch.testing.assert_close(lstm.bias_hh_l0.grad, bias0, rtol=0, atol=0)  # biases: no noise either
    # the non-dominant modalities get the noise too (k = 1), as in the published code
    assert model.on_epoch_end(None)["ogm_k_cxr"] == 1.0
    assert float((cxr_w.grad - cxr0).std()) == pytest.approx(float(cxr0.std()), rel=0.3)
    # same generator seed, same noise
    model2, batch2 = dominated_setup(ge=True)
    out2 = model2(batch2)
    out2.loss.backward()
    model2.after_backward(batch2, out2, SimpleNamespace(epoch=3, generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(model2.encoders.encoders["ehr"].lstm.weight_hh_l0.grad, lstm.weight_hh_l0.grad)


def test_no_modulation_outside_the_active_epochs():
    model, batch = dominated_setup(ge=True)
    model.cfg.start_epoch, model.cfg.end_epoch = 2, 4
    out = model(batch)
    out.loss.backward()
    before = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    for epoch in (1, 5):
        model.after_backward(batch, out, SimpleNamespace(epoch=epoch, generator=torch.Generator()))
    after = [p.grad for p in model.parameters() if p.grad is not None]
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.on_epoch_end(None) == {}


def test_config_refuses_a_hidden_fusion_layer():
    with pytest.raises(ValueError, match="head_hidden must be 0"):
        build_method("ogm_ge", spec(), {**SMALL, "head_hidden": 8})
