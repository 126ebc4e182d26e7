"""Fault injection, caches: a cache built for another cohort, task or window, an old cache without
provenance, or one whose availability disagrees with the cohort is refused by ``omnifuse train`` and
``omnifuse predict`` with one line naming the cache, the attribute and both values; no run is written."""

from __future__ import annotations

import h5py
import numpy as np
import polars as pl
import pytest
import torch

from omnifuse.formats.cache import STATUS, read_cache, write_cache
from omnifuse.formats.cohort import read_cohort, write_cohort
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train
from tests.faults.common import assert_fails, run_cli
from tests.helpers import mini_hospital

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ["train.threads=1", "train.max_epochs=1"]


def train_args(cohort, caches, out, method="unimodal", combo=None):
    return ["train", "--cohort", cohort, *[a for m, p in caches.items() for a in ("--cache", f"{m}={p}")],
            "--method", method, "--out", out, "--folds", "0", *(["--combo", combo] if combo else []),
            *QUICK]  # fmt: skip


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    """The mini-hospital's IHM and phenotyping cohorts and their EHR caches, built by the commands."""
    from omnifuse.cli import main

    root = tmp_path_factory.mktemp("hospital")
    src = mini_hospital(root / "mimic-iv")
    events = root / "events.parquet"
    assert main(["ehr", "extract", "--source", str(src), "--out", str(events)]) == 0
    out = {}
    for task in ("ihm", "pheno"):
        cohort = root / f"{task}.parquet"
        assert main(["cohort", "--dataset", "mimic", "--kind", "mimic", "--task", task, "--modalities", "ehr",
                     "--ehr-path", str(src), "--ehr-events", str(events), "--n-folds", "2",
                     "--out", str(cohort)]) == 0  # fmt: skip
        cache = root / f"{task}_ehr.h5"
        assert main(["ehr", "features", "--cohort", str(cohort), "--events", str(events), "--out", str(cache),
                     "--max-hours", "240"]) == 0  # fmt: skip
        out[task] = (cohort, cache)
    return out


def test_the_phenotyping_ehr_cache_is_refused_for_the_ihm_cohort(hospital, tmp_path, caplog):
    ihm, _ = hospital["ihm"]
    _, pheno_cache = hospital["pheno"]
    out = tmp_path / "run"
    text = assert_fails(train_args(ihm, {"ehr": pheno_cache}, out), caplog, pheno_cache, absent=[out])
    assert "task 'pheno'" in text and "'ihm'" in text  # before: accepted, AUROC inflated by future data
    assert read_cache(pheno_cache).attrs["window"] == "[intime, outtime]"


def test_a_cache_of_the_right_task_but_another_cohort_is_refused(tmp_path, caplog):
    cohort, caches = make_toy_run(tmp_path / "a", ToySpec(n=40, shapes={"ehr": (3, 76), "cxr": (1, 4)}))
    frame, meta = read_cohort(cohort)
    flipped = frame.with_columns(fold=pl.when(pl.col("sample_id") == "S000001").then(1 - pl.col("fold") % 2)
                                 .otherwise(pl.col("fold")))  # fmt: skip
    other = tmp_path / "other.parquet"
    write_cohort(other, flipped, meta)
    out = tmp_path / "run"
    text = assert_fails(train_args(other, caches, out, "concat"), caplog, caches["ehr"], "cohort_sha256",
                        absent=[out])  # fmt: skip
    assert text.count("'") >= 4  # both digests quoted


def test_caches_without_provenance_say_rebuild(tmp_path, caplog):
    cohort, caches = make_toy_run(tmp_path, ToySpec(n=40, shapes={"ehr": (3, 76), "cxr": (1, 4)}))
    with h5py.File(caches["cxr"], "r+") as f:  # what an older omnifuse wrote
        for key in ("cohort_sha256", "dataset", "task", "window"):
            del f.attrs[key]
    out = tmp_path / "run"
    assert_fails(train_args(cohort, caches, out, "concat"), caplog, caches["cxr"], "rebuild", absent=[out])


def test_availability_must_equal_has_unless_the_cache_says_why(tmp_path, caplog):
    spec = ToySpec(n=40, shapes={"ehr": (3, 76), "cxr": (1, 4)})
    cohort, caches = make_toy_run(tmp_path, spec)
    cache = read_cache(caches["cxr"])
    with h5py.File(caches["cxr"], "r+") as f:  # rows emptied but still marked ok: an inconsistent cache
        present = f["present"][()]
        present[:3] = False
        f["present"][...] = present
    out = tmp_path / "run"
    assert_fails(train_args(cohort, caches, out, "concat"), caplog, caches["cxr"], "has_cxr", absent=[out])
    cache.present[:3] = False  # the same rows as extraction failures: explained, accepted
    cache.data[:3], cache.mask[:3] = 0, False
    cache.status[:3] = STATUS["failed"]
    write_cache(caches["cxr"], cache)
    torch.set_num_threads(1)
    summary = train(cohort, caches, "concat", out_dir=out, folds=[0], overrides=QUICK)
    assert summary["folds"] == [0]
    assert summary["config"]["inputs"]["caches"]["cxr"]["path"] == str(caches["cxr"])
    assert summary["config"]["inputs"]["cohort"]["dataset"] == "toy"
    assert summary["config"]["host"]["host_cpu"]


def test_predict_with_a_cohort_checks_its_caches_too(tmp_path, caplog):
    spec = ToySpec(n=40, shapes={"ehr": (3, 76), "cxr": (1, 4)})
    cohort, caches = make_toy_run(tmp_path / "a", spec)
    torch.set_num_threads(1)
    train(cohort, caches, "concat", out_dir=tmp_path / "run", folds=[0], overrides=QUICK)
    other, other_caches = make_toy_run(tmp_path / "b", ToySpec(**{**spec.__dict__, "seed": 5}))
    out = tmp_path / "p.parquet"
    ckpt = tmp_path / "run" / "fold0" / "checkpoint.pt"
    args = ["predict", "--checkpoint", ckpt, "--cohort", other, "--cache", f"ehr={caches['ehr']}",
            "--cache", f"cxr={caches['cxr']}", "--out", out]  # fmt: skip
    assert_fails(args, caplog, caches["ehr"], "cohort_sha256", absent=[out])
    args = [a if "=" not in str(a) else f"{a.split('=')[0]}={other_caches[a.split('=')[0]]}" for a in args]
    assert run_cli(args, caplog)[0] == 0 and out.is_file()
    assert np.isfinite(pl.read_parquet(out)["y_score"].to_numpy()).all()
