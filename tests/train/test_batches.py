"""Batches: padding steps dropped only where the encoder cannot tell, fold normalisation applied per batch
exactly as a whole-cache normalisation would, statistics without whole-cache copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnifuse.features.runtime import keep_freed_memory
from omnifuse.methods.base import ModelSpec
from omnifuse.methods.registry import build_method
from omnifuse.nn import encoders
from omnifuse.nn.encoders import ModalityEncoders
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train.config import TrainConfig
from omnifuse.train.data import load_run_data
from omnifuse.train.loop import fit_normalizers
from omnifuse.train.normalize import FittedNormalizer, ZScore, apply_stats, channel_stats

SHAPES = {"ehr": (6, 5), "cxr": (1, 8), "rep": (40, 6)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    spec = ToySpec(n=80, shapes=SHAPES, availability={"rep": 0.7, "ehr": 0.8}, min_valid=0.1, seed=3)
    cohort, caches = make_toy_run(root, spec)
    return load_run_data(cohort, caches, cohort_mode="all")


def test_trimming_drops_only_steps_no_row_of_the_batch_needs(data):
    idx = torch.arange(len(data))
    lengths = data.lengths("rep")
    rep = data.modalities.index("rep")
    assert (lengths[~data.present[:, rep]] == 1).all()  # rows without data: a zero input of any length
    part = idx[lengths < 30][:16]  # reports shorter than the cache's 40 steps, and rows without one
    assert (~data.present[part, rep]).any() and data.present[part, rep].any()
    batch = data.batch(part, trim={"rep"})
    steps = int(lengths[part].max())
    assert steps < 30 and batch.x["rep"].shape[1] == steps and batch.x["ehr"].shape[1] == SHAPES["ehr"][0]
    full = data.batch(part)
    torch.testing.assert_close(batch.x["rep"], full.x["rep"][:, :steps], rtol=0, atol=0)
    assert not full.x["rep"][:, steps:].any() and not full.mask["rep"][data.present[part, rep], steps:].any()
    assert batch.mask["rep"].any(1).all()  # every row keeps a valid step


@pytest.mark.parametrize("token_encoder", ["attention", "transformer"])
def test_trimmed_batches_give_the_encoders_the_same_embeddings(data, token_encoder):
    torch.manual_seed(0)
    enc = ModalityEncoders(data.shapes, d=16, ehr_hidden=8, ehr_layers=1, token_encoder=token_encoder).eval()
    assert enc.length_invariant() == {"cxr", "rep"}  # not the LSTM: zero steps change its state
    idx = torch.arange(len(data))
    with torch.no_grad():
        for part in idx.split(16):
            full, trimmed = data.batch(part), data.batch(part, trim=enc.length_invariant())
            torch.testing.assert_close(
                enc(trimmed.x, trimmed.mask), enc(full.x, full.mask), rtol=1e-5, atol=1e-5
            )
        placeholders = enc.placeholders()  # computed on one zero step where the length cannot matter
        for j, m in enumerate(data.modalities):
            length, dim = data.shapes[m]
            zero = torch.zeros(1, length, dim)
            full = enc.encode(m, zero, torch.ones(1, length, dtype=torch.bool))[0]
            torch.testing.assert_close(placeholders[j], full, rtol=1e-5, atol=1e-6)


def test_a_model_trains_and_predicts_the_same_with_trimmed_batches(data):
    spec = ModelSpec(data.modalities, data.inputs, data.shapes, data.meta.kind, data.meta.n_outputs)
    torch.manual_seed(0)
    model = build_method(
        "omnifuse", spec, {"d": 16, "ehr_hidden": 8, "ehr_layers": 1, "cra_hidden": 16}
    ).eval()
    idx = torch.arange(len(data))
    normalizers = fit_normalizers(
        data, np.arange(40), TrainConfig(normalize=("ehr=ehr_zscore", "others=zscore"))
    )
    with torch.no_grad():
        a = model(data.batch(idx, normalizers, targets=False))
        b = model(data.batch(idx, normalizers, targets=False, trim=model.encoders.length_invariant()))
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_per_batch_normalisation_equals_normalising_the_whole_cache(data):
    train_idx = np.flatnonzero(data.folds != 0)
    normalizers = fit_normalizers(data, train_idx, TrainConfig(normalize=("ehr=ehr_zscore", "others=zscore")))
    assert set(normalizers) == set(data.modalities)
    idx = torch.arange(len(data))
    batch = data.batch(idx, normalizers, targets=True)
    for m, fitted in normalizers.items():
        whole = fitted.apply(data.x[m])  # what the trainer used to hold for every fold
        torch.testing.assert_close(batch.x[m], whole, rtol=0, atol=0)
        assert batch.x[m].dtype == torch.float32 and data.x[m].dtype == torch.float16  # the cache untouched
    restored = FittedNormalizer.from_dict(normalizers["rep"].to_dict())
    torch.testing.assert_close(restored.apply(data.x["rep"]), normalizers["rep"].apply(data.x["rep"]))


def test_statistics_in_chunks_equal_the_two_pass_statistics():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(300, 7, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 1e3, 0.0]) + 123.4).half()
    mask = torch.rand(300, 7, generator=g) > 0.3
    channels = torch.tensor([0, 1, 3, 4])
    state = channel_stats(x, mask, channels, chunk=16)
    values = x[..., channels][mask].double()
    std = values.std(0, unbiased=False)
    torch.testing.assert_close(state["mean"], values.mean(0).float())
    torch.testing.assert_close(state["std"], torch.where(std > 1e-8, std, torch.ones_like(std)).float())
    assert state["std"][3] == 1.0  # a constant channel (at a value float16 cannot hold exactly) keeps std 1
    out = apply_stats(x, state)
    others = torch.tensor([2])
    torch.testing.assert_close(out[..., others], x[..., others].float(), rtol=0, atol=0)
    every = ZScore().fit(x, mask, {})
    assert every["mean"].shape == (5,)
    with pytest.raises(ValueError, match="no valid training steps"):
        channel_stats(x, torch.zeros_like(mask), channels)


def test_freed_memory_is_kept_where_glibc_allows_it():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True


@pytest.mark.parametrize("value", [123.4, 0.1, 3333.3, 140.2])
def test_a_constant_channel_keeps_std_one_at_any_value(value):
    x = torch.full((500, 3, 2), value, dtype=torch.float32)
    x[..., 1] = torch.linspace(0, 1, 500).view(-1, 1)
    state = channel_stats(x, torch.ones(500, 3, dtype=torch.bool), torch.arange(2), chunk=64)
    assert state["std"][0] == 1.0 and state["mean"][0] == torch.tensor(value)
    torch.testing.assert_close(apply_stats(x, state)[..., 0], torch.zeros(500, 3), rtol=0, atol=0)


@pytest.mark.parametrize(("rows", "padded"), [(1, 8), (61, 63), (65, 65), (509, 510)])
def test_bf16_lstm_batches_are_padded_to_whole_blocks_without_changing_a_row(rows, padded, monkeypatch):
    torch.manual_seed(0)
    enc = encoders.LSTMEncoder(5, 8, hidden=16, layers=2).eval()
    x, mask = torch.randn(rows, 6, 5), torch.rand(rows, 6) > 0.3
    mask[:, 0] = True
    seen: list[int] = []
    enc.lstm.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(x, mask)
        monkeypatch.setattr(encoders, "BF16_LSTM_BLOCKS", range(1, 2))  # every count qualifies
        plain = enc(x, mask)
    assert seen == [padded, rows]
    assert out.shape == (rows, 8) and torch.equal(out, plain)
    seen.clear()
    enc(x, mask)  # fp32: never padded
    assert seen == [rows]


def test_attention_pooling_casts_its_tokens_once_under_autocast_with_the_same_result():
    """Under bf16 autocast the pool casts the (large) token batch once for both of its products; the
    output and the gradients equal those of autocast's own per-product casts."""
    torch.manual_seed(0)
    pool = encoders.AttentionPool(6, 4)
    x = torch.randn(5, 40, 6, requires_grad=True)
    mask = torch.rand(5, 40) > 0.3
    mask[:, 0] = True

    def reference(x: torch.Tensor) -> torch.Tensor:  # each product casts x itself
        scores = pool.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.bmm(scores.softmax(-1).unsqueeze(1), x).squeeze(1)

    def token_casts(f) -> int:  # on a batch as the trainer builds it (autocast caches a leaf's casts)
        with torch.profiler.profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
            f(x.detach())
        return sum(e.name == "aten::_to_copy" and e.input_shapes[:1] == [[5, 40, 6]] for e in prof.events())

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = pool(x, mask), reference(x)
    assert out.dtype == ref.dtype == torch.bfloat16 and torch.equal(out, ref)
    (g_out,) = torch.autograd.grad(out.float().sum(), x)
    (g_ref,) = torch.autograd.grad(ref.float().sum(), x)
    assert torch.equal(g_out, g_ref)
    assert token_casts(lambda x: pool(x, mask)) == 1 and token_casts(reference) == 2
