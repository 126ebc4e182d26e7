"""Simulated missingness for the sweeps: rate, named/random modality, never the last one, seeded and
order-independent, and how the run data carry dropped modalities (targets in training only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train.data import load_run_data
from omnifuse.train.missingness import simulate_missing

MODS = ("ehr", "cxr", "rep")


def ids(n):
    return [f"S{i:05d}" for i in range(n)]


def test_random_modality_at_rate_r_drops_one_per_affected_sample():
    n = 20000
    avail = np.ones((n, 3), dtype=bool)
    dropped = simulate_missing(ids(n), avail, MODS, 0.4, "random", seed=0)
    per_sample = dropped.sum(1)
    assert set(np.unique(per_sample)) == {0, 1}
    assert per_sample.mean() == pytest.approx(0.4, abs=0.015)
    assert dropped.mean(0) == pytest.approx([0.4 / 3] * 3, abs=0.015)


def test_named_modality_only_and_never_the_last_one():
    n = 5000
    rng = np.random.default_rng(0)
    avail = rng.random((n, 3)) < 0.6
    avail[~avail.any(1), 0] = True
    dropped = simulate_missing(ids(n), avail, MODS, 0.9, "cxr", seed=3)
    assert not dropped[:, [0, 2]].any()
    assert not (dropped & ~avail).any()
    left = avail & ~dropped
    assert left.any(1).all()  # nobody loses their last modality
    eligible = avail[:, 1] & (avail.sum(1) >= 2)
    assert dropped[:, 1].sum() == pytest.approx(0.9 * eligible.sum(), rel=0.05)
    rnd = simulate_missing(ids(n), avail, MODS, 0.9, "random", seed=3)
    assert (avail & ~rnd).any(1).all()
    assert not (rnd & ~avail).any()


def test_seeded_order_independent_and_nested_over_rates():
    n = 400
    avail = np.ones((n, 3), dtype=bool)
    a = simulate_missing(ids(n), avail, MODS, 0.3, seed=7)
    b = simulate_missing(ids(n), avail, MODS, 0.3, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, simulate_missing(ids(n), avail, MODS, 0.3, seed=8))
    perm = np.random.default_rng(1).permutation(n)
    shuffled = simulate_missing([ids(n)[i] for i in perm], avail[perm], MODS, 0.3, seed=7)
    np.testing.assert_array_equal(shuffled, a[perm])
    higher = simulate_missing(ids(n), avail, MODS, 0.6, seed=7)
    assert (higher | ~a).all()  # everything dropped at 0.3 is dropped at 0.6, same modality
    assert not simulate_missing(ids(n), avail, MODS, 0.0).any()


def test_bad_arguments_are_refused():
    avail = np.ones((3, 2), dtype=bool)
    with pytest.raises(ValueError, match=r"\[0, 0.9\]"):
        simulate_missing(ids(3), avail, ("ehr", "cxr"), 0.95)
    with pytest.raises(ValueError, match="'rep' is not an input modality"):
        simulate_missing(ids(3), avail, ("ehr", "cxr"), 0.5, "rep")


def test_run_data_keeps_dropped_modalities_as_training_targets_only(tmp_path):
    spec = ToySpec(n=200, shapes={"ehr": (6, 5), "cxr": (1, 8), "rep": (4, 6)})
    cohort, caches = make_toy_run(tmp_path, spec)
    data = load_run_data(
        cohort, caches, "ehr+cxr", with_targets=True, missing_rate=0.5, missing_modality="cxr"
    )
    assert data.modalities == ("ehr", "cxr", "rep") and data.inputs == ("ehr", "cxr")
    j_cxr, j_rep = 1, 2
    assert data.dropped[:, j_cxr].float().mean() == pytest.approx(0.5, abs=0.12)
    assert not data.observed[:, j_rep].any()  # outside the combination: never an input
    assert (data.present[:, j_cxr] & ~data.observed[:, j_cxr] == data.dropped[:, j_cxr]).all()
    idx = torch.arange(len(data))
    train_batch = data.batch(idx, targets=True)
    eval_batch = data.batch(idx, targets=False)
    dropped = data.dropped[:, j_cxr]
    assert train_batch.present[:, j_cxr].all() and train_batch.x["cxr"][dropped].abs().sum() > 0
    assert eval_batch.present is None
    assert eval_batch.x["cxr"][dropped].abs().sum() == 0  # nothing but inputs reaches a model at test time
    assert eval_batch.x["rep"].abs().sum() == 0
    baseline = load_run_data(
        cohort, caches, "ehr+cxr", with_targets=False, missing_rate=0.5, missing_modality="cxr"
    )
    assert baseline.modalities == ("ehr", "cxr")  # methods without imputation never load the others
    np.testing.assert_array_equal(baseline.dropped.numpy(), data.dropped[:, :2].numpy())
