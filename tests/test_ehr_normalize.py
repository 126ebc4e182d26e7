"""Per-fold z-scoring of the continuous EHR columns (statistics from training samples only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omnifuse.features.cache import FeatureCache
from omnifuse.features.ehr.channels import channel_spec
from omnifuse.features.ehr.normalize import EhrNormalizer, fit_normalizer, normalize_fold

SPEC = channel_spec()
CONT = SPEC.continuous_columns()


def make_cache(n=6, steps=4, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, steps, 76)).astype(np.float32)
    data[:, :, CONT] = rng.normal(100, 10, size=(n, steps, len(CONT)))
    mask = np.ones((n, steps), bool)
    mask[0, 2:] = False  # a short stay: padding
    data[0, 2:] = 0
    present = np.ones(n, bool)
    present[5] = False  # no EHR
    data[5] = 0
    mask[5] = False
    ids = np.array([f"s{i}" for i in range(n)], dtype=object)
    attrs = {"preprocessing": json.dumps(SPEC.to_json_dict())}
    return FeatureCache("ehr", ids, present, data, mask, attrs)


def test_statistics_come_from_valid_training_steps_only():
    cache = make_cache()
    norm = fit_normalizer(cache, ["s0", "s1", "s5"])
    values = np.concatenate([cache.data[0, :2][:, CONT], cache.data[1][:, CONT]])
    assert norm.columns == tuple(CONT)
    np.testing.assert_allclose(norm.mean, values.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, values.std(axis=0, ddof=1), rtol=1e-5)
    # changing a test sample does not change the statistics
    other = make_cache()
    other.data[3] += 1000
    assert np.allclose(fit_normalizer(other, ["s0", "s1", "s5"]).mean, norm.mean)


def test_apply_touches_only_the_continuous_columns_and_keeps_padding_zero():
    cache = make_cache()
    out, norm = normalize_fold(cache, ["s0", "s1", "s2", "s3"])
    assert out.data.dtype == np.float32
    others = [c for c in range(76) if c not in CONT]
    np.testing.assert_array_equal(out.data[1][:, others], cache.data[1][:, others])
    np.testing.assert_allclose(
        out.data[1][:, CONT], (cache.data[1][:, CONT] - norm.mean) / norm.std, rtol=1e-5
    )
    assert (out.data[0, 2:] == 0).all() and (out.data[5] == 0).all()
    train = out.data[[0, 1, 2, 3]][out.mask[[0, 1, 2, 3]]][:, CONT]
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    assert EhrNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).columns == norm.columns


def test_constant_columns_and_too_little_data():
    cache = make_cache()
    cache.data[:, :, CONT[0]] = 5.0
    norm = fit_normalizer(cache, ["s1", "s2"])
    assert norm.std[0] == pytest.approx(1e-7)
    with pytest.raises(ValueError, match="cannot fit EHR normalisation"):
        fit_normalizer(cache, ["s5"])
