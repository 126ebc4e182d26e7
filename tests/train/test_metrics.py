"""Metrics against scikit-learn / scipy, the undefined cases, and fold summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from omnifuse.metrics import (
    auprc,
    auprc_binary,
    auroc,
    auroc_binary,
    average_ranks,
    compute_metrics,
    summarize_folds,
)


@pytest.mark.parametrize("seed", range(5))
def test_binary_auroc_and_auprc_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding creates many ties
    assert auroc_binary(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc_binary(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert auroc(y[:, None], s[:, None], "binary") == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_multilabel_macro_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=(150, 6))
    s = rng.random((150, 6)) + 0.5 * y
    assert auroc(y, s, "multilabel") == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert auprc(y, s, "multilabel") == pytest.approx(
        average_precision_score(y, s, average="macro"), abs=1e-12
    )


def test_multiclass_macro_ovr_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=180)
    logits = rng.normal(size=(180, 3)) + np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert auroc(y, p, "multiclass") == pytest.approx(ref, abs=1e-12)
    onehot = np.eye(3)[y]
    assert auprc(y, p, "multiclass") == pytest.approx(
        average_precision_score(onehot, p, average="macro"), abs=1e-12
    )


def test_undefined_labels_are_left_out_of_the_macro_and_reported():
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    s = np.array([[0.1, 0.3], [0.9, 0.2], [0.2, 0.8], [0.7, 0.4]])
    m = compute_metrics(y, s, "multilabel", ["a", "b"])
    assert m["auroc"] == pytest.approx(1.0) and m["n_labels_defined"] == 1
    assert math.isnan(m["per_label_auroc"]["b"]) and m["per_label_auroc"]["a"] == 1.0
    assert math.isnan(auroc_binary(np.zeros(4), np.arange(4)))
    assert math.isnan(auprc_binary(np.zeros(4), np.arange(4)))


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert auroc_binary(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc_binary(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc_binary(y, np.full(4, 0.5)) == 0.5


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="multilabel"):
        auroc(np.zeros((4, 2)), np.zeros((4, 3)), "multilabel")
    with pytest.raises(ValueError, match="kind"):
        auroc(np.zeros(4), np.zeros(4), "regression")


@pytest.mark.parametrize("seed", range(3))
def test_average_ranks_equal_scipy_rankdata_exactly(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=500), 1)  # many ties
    np.testing.assert_array_equal(average_ranks(x), stats.rankdata(x))


def test_summarize_folds_uses_sample_std():
    s = summarize_folds([{"auroc": 0.8, "auprc": 0.5}, {"auroc": 0.9, "auprc": 0.7}])
    assert s["auroc"]["mean"] == pytest.approx(0.85)
    assert s["auroc"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert s["n_folds"] == 2 and s["auprc"]["folds"] == [0.5, 0.7]
