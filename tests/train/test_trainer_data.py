"""Stage-2 data side: cohort + caches join, availability, per-fold normalisation (the EHR z-score hook)
and clear errors for mismatched inputs."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from omnifuse.formats.cache import STATUS, CacheError, FeatureCache, read_cache, write_cache
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train
from omnifuse.train.config import TrainConfig
from omnifuse.train.data import load_run_data, parse_combo
from omnifuse.train.loop import fit_normalizers
from omnifuse.train.normalize import (
    NORMALIZERS,
    REFERENCE_EHR_CONTINUOUS,
    EhrZScore,
    ehr_continuous_channels,
    register_normalizer,
)
from omnifuse.train.splits import split_patients
from tests.helpers import shared_data


def test_reference_ehr_layout_matches_the_mimic3_benchmarks_discretizer():
    path = shared_data("mimic3-benchmarks-resources", "discretizer_config.json")
    cfg = json.loads(path.read_text())
    columns, continuous = 0, []
    for name in cfg["id_to_channel"]:
        if cfg["is_categorical_channel"][name]:
            columns += len(cfg["possible_values"][name])
        else:
            continuous.append(columns)
            columns += 1
    assert columns + len(cfg["id_to_channel"]) == 76
    assert tuple(continuous) == REFERENCE_EHR_CONTINUOUS


def test_continuous_channels_come_from_the_cache_attrs_when_present():
    assert ehr_continuous_channels({"preprocessing": json.dumps({"continuous_columns": [1, 4]})}, 6) == [1, 4]
    names = ["A->0", "B", "C", "mask->A", "mask->B", "mask->C"]
    assert ehr_continuous_channels({"preprocessing": {"columns": names}}, 6) == [1, 2]
    assert ehr_continuous_channels({}, 76) == list(REFERENCE_EHR_CONTINUOUS)
    with pytest.raises(ValueError, match="cannot tell the continuous channels"):
        ehr_continuous_channels({"path": "x/ehr.h5"}, 10)


def test_ehr_zscore_uses_valid_training_steps_and_leaves_other_channels():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(50, 4, 76, generator=g) * 10 + 5
    mask = torch.ones(50, 4, dtype=torch.bool)
    mask[:, 3] = False
    data[:, 3] = 1e6  # invalid steps must not enter the statistics
    state = EhrZScore().fit(data, mask, {})
    out = EhrZScore().apply(data, state)
    ch = list(REFERENCE_EHR_CONTINUOUS)
    valid = out[:, :3][..., ch].reshape(-1, len(ch))
    torch.testing.assert_close(valid.mean(0), torch.zeros(len(ch)), atol=1e-4, rtol=0)
    torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(len(ch)), atol=1e-4, rtol=0)
    others = [c for c in range(76) if c not in ch]
    torch.testing.assert_close(out[..., others], data[..., others])


def test_fold_statistics_come_from_the_training_part_only(tmp_path):
    spec = ToySpec(n=120, shapes={"ehr": (6, 5), "cxr": (1, 4)}, seed=0)
    cohort, caches = make_toy_run(tmp_path, spec)
    data = load_run_data(cohort, caches)
    train_idx = np.flatnonzero(data.folds != 0)
    states = fit_normalizers(data, train_idx, TrainConfig())
    data.x["ehr"][torch.as_tensor(np.flatnonzero(data.folds == 0))] = 1000.0  # test fold changes
    again = fit_normalizers(data, train_idx, TrainConfig())
    torch.testing.assert_close(states["ehr"].state["mean"], again["ehr"].state["mean"])
    assert states["ehr"].name == "ehr_zscore" and states["cxr"].name == "zscore"
    none = fit_normalizers(data, train_idx, TrainConfig(normalize=("ehr=none",)))
    assert none == {}  # no "*" entry: the other modalities stay as extracted


def test_a_registered_normalizer_replaces_the_builtin(tmp_path, monkeypatch):
    class Half:
        def fit(self, data, mask, attrs):
            return {"scale": torch.tensor(0.5)}

        def apply(self, data, state):
            return data.float() * state["scale"]

    monkeypatch.setitem(NORMALIZERS, "ehr_zscore", NORMALIZERS["ehr_zscore"])
    register_normalizer("ehr_zscore", Half())
    cohort, caches = make_toy_run(tmp_path, ToySpec(n=40, shapes={"ehr": (3, 2), "cxr": (1, 2)}))
    data = load_run_data(cohort, caches)
    normalizers = fit_normalizers(data, np.arange(20), TrainConfig())
    batch = data.batch(torch.arange(len(data)), normalizers, targets=True)
    torch.testing.assert_close(batch.x["ehr"], data.x["ehr"].float() * 0.5)


def test_availability_is_cohort_flag_and_cache_presence(tmp_path):
    cohort, caches = make_toy_run(tmp_path, ToySpec(n=60, shapes={"cxr": (1, 4), "rep": (3, 2)}, seed=2))
    cache = read_cache(caches["rep"])
    cache.present[:5] = False  # extraction failures: the cache says absent although has_rep is true
    cache.status[:5] = STATUS["failed"]  # ... and its status says why
    cache.data[:5] = 0
    cache.mask[:5] = False
    write_cache(caches["rep"], cache)
    data = load_run_data(cohort, caches, cohort_mode="all")
    sid = list(data.ids)
    for s in cache.ids[:5]:
        assert not data.present[sid.index(s), 1]
    assert data.mask["rep"][sid.index(cache.ids[0])].all()  # absent rows: all-valid zero input
    assert data[0]["sample_id"] == sid[0] and data[0]["x_rep"].shape == (3, 2)


def test_mismatched_caches_are_refused_with_names(tmp_path):
    cohort, caches = make_toy_run(tmp_path, ToySpec(n=30, shapes={"cxr": (1, 4), "rep": (3, 2)}))
    cache = read_cache(caches["cxr"])
    keep = np.arange(30) >= 3
    short = FeatureCache(
        "cxr", cache.ids[keep], cache.present[keep], cache.data[keep], cache.mask[keep], cache.attrs
    )
    write_cache(tmp_path / "short.h5", short)
    with pytest.raises(CacheError, match=r"short\.h5: no row for 3 sample\(s\).*S000000"):
        load_run_data(cohort, {**caches, "cxr": tmp_path / "short.h5"})
    with pytest.raises(CacheError, match="expected modality 'rep'"):
        load_run_data(cohort, {**caches, "rep": caches["cxr"]})
    with pytest.raises(ValueError, match="repeats"):
        parse_combo("cxr+cxr", ("cxr", "rep"))
    assert parse_combo("rep+cxr", ("cxr", "rep")) == ("cxr", "rep")


def test_split_patients_is_seeded_stratified_and_grouped():
    patients = np.array([f"p{i // 2}" for i in range(200)], dtype=object)
    labels = np.array([(i // 2) % 5 == 0 for i in range(200)], dtype=np.int64)
    idx = np.arange(200)
    a_keep, a_off = split_patients(idx, patients, labels, "binary", 0.1, seed=1)
    _, b_off = split_patients(idx, patients, labels, "binary", 0.1, seed=1)
    np.testing.assert_array_equal(a_off, b_off)
    assert len(a_off) == 20 and labels[a_off].sum() == 4  # 10 % of each label stratum
    assert not set(patients[a_off]) & set(patients[a_keep])
    _, c_off = split_patients(idx, patients, labels, "binary", 0.1, seed=2)
    assert set(c_off) != set(a_off)


def test_predictions_written_for_labels_with_odd_names(tmp_path):
    from omnifuse.formats.cohort import CohortMeta
    from omnifuse.formats.run import (
        predictions_metadata,
        predictions_table,
        read_predictions,
        write_parquet,
    )

    meta = CohortMeta("d", "pheno", "multilabel", ("y_a b", "y_c/d"), ("a b", "c/d"), ("ehr", "cxr"), 2)
    table = predictions_table(
        meta,
        np.array(["s1", "s2"]),
        np.array([[0.1, 0.9], [0.8, 0.2]]),
        ("ehr", "cxr"),
        y=np.array([[0, 1], [1, 0]]),
    )
    write_parquet(tmp_path / "p.parquet", table, predictions_metadata(meta, ("ehr", "cxr")))
    frame, info, y_true, y_score = read_predictions(tmp_path / "p.parquet")
    assert info["y_score_columns"] == ["y_score_a_b", "y_score_c_d"]
    np.testing.assert_array_equal(y_true, [[0, 1], [1, 0]])
    assert isinstance(frame, pl.DataFrame) and y_score.shape == (2, 2)


def test_all_defaults_lists_every_config_from_the_dataclasses():
    from omnifuse.train import all_defaults

    defaults = all_defaults()
    assert defaults["train"]["lr"] == 1e-3 and defaults["train"]["normalize"] == [
        "ehr=ehr_zscore",
        "others=zscore",
    ]
    assert set(defaults["methods"]) >= {"omnifuse", "concat"}
    omni = defaults["methods"]["omnifuse"]
    assert (omni["k"], omni["alpha"], omni["beta"]) == (5, 0.1, 0.5)
    assert (omni["lambda1"], omni["lambda2"], omni["lambda3"]) == (1.0, 10.0, 0.5)
    assert omni["dwfuse"] and omni["tla"] and omni["imp_fw"] and omni["imp_bw"]
    assert defaults["methods"]["concat"]["d"] == omni["d"] == 256


def test_standardised_inputs_recover_a_planted_signal_that_raw_large_scale_features_hide(tmp_path):
    """Like random-ResNet image vectors: channels around 40 with scales up to ~500; the label lives in
    one channel of scale 1. Per-fold standardisation (the default) finds it; the raw features do not."""
    spec = ToySpec(n=800, shapes={"cxr": (1, 32)}, seed=5, n_folds=2, prevalence=0.3)
    cohort, _ = make_toy_run(tmp_path / "labels", spec)
    y = pl.read_parquet(cohort)["y_label"].to_numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    scales = np.geomspace(1.0, 500.0, 32)
    x = 40.0 + rng.normal(size=(spec.n, 32)) * scales
    x[:, 0] = 40.0 + 3.0 * y + rng.normal(size=spec.n)  # the signal (AUROC ~0.98): smallest-scale channel
    cohort, caches = make_toy_run(tmp_path / "run", spec, {"cxr": x[:, None, :].astype(np.float32)})
    small = ["train.max_epochs=30", "train.patience=30", "method.d=16", "train.threads=1"]
    scores = {}
    for name, normalize in (("standardised", "[others=zscore]"), ("raw", "[]")):
        res = train(
            cohort, caches, "unimodal", combo="cxr", overrides=[*small, f"train.normalize={normalize}"]
        )
        scores[name] = res["auroc"]["mean"]
    assert scores["standardised"] > 0.75, scores
    assert scores["raw"] < scores["standardised"] - 0.15, scores


def test_normalize_entries_name_a_modality_or_others():
    assert TrainConfig(normalize=("cxr=none", "others=zscore")).normalizer_for("rep") == "zscore"
    assert TrainConfig(normalize=("cxr=none",)).normalizer_for("rep") == "none"
    with pytest.raises(ValueError, match=r"got '\[\*=zscore\]'"):
        TrainConfig.from_dict({"normalize": "[*=zscore]"})
