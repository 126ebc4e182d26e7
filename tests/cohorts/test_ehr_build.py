"""The ehr.h5 cache: same result written directly, sharded (resumable) and from unsorted event files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from omnifuse.cohorts.build import CohortOptions, DatasetSources, build_cohort
from omnifuse.cohorts.ehr import build
from omnifuse.cohorts.ehr.events import extract_events_to, summary_path
from omnifuse.cohorts.ehr.options import DiscretizerOptions, EventOptions
from omnifuse.cohorts.mimic import open_source
from omnifuse.formats import cache as cache_module
from omnifuse.formats.cache import read_cache
from omnifuse.formats.cohort import write_cohort
from tests.helpers import mini_hospital


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    hospital = mini_hospital(root / "mimic-iv")
    extract_events_to(root / "events.parquet", open_source(hospital), EventOptions())
    frame, meta = build_cohort(DatasetSources("mini", "mimic", ("ehr",), "mimic-iv", str(hospital)), "pheno",
                               CohortOptions(n_folds=2), root / "events.parquet")  # fmt: skip
    write_cohort(root / "pheno.parquet", frame, meta)
    return root


def test_sharded_and_unsorted_paths_give_the_in_memory_result(inputs, tmp_path, monkeypatch):
    options = DiscretizerOptions(max_hours=60)
    info = build.build_ehr_cache(
        inputs / "pheno.parquet", inputs / "events.parquet", tmp_path / "a.h5", options
    )
    assert info["written"] == "direct" and info["n_steps"] == 30  # 60 h cap at 2 h
    reference = read_cache(tmp_path / "a.h5", "ehr")
    # events in another order (e.g. written by an older version): sorted on load
    shuffled = pl.read_parquet(inputs / "events.parquet").sample(fraction=1.0, shuffle=True, seed=1)
    meta = pl.read_parquet_metadata(inputs / "events.parquet")
    shuffled.write_parquet(tmp_path / "events.parquet", metadata=meta)
    summary_path(tmp_path / "events.parquet").write_text(summary_path(inputs / "events.parquet").read_text())
    monkeypatch.setattr(build, "DIRECT_BYTES", 0)
    info = build.build_ehr_cache(
        inputs / "pheno.parquet", tmp_path / "events.parquet", tmp_path / "b.h5", options, shard_size=3
    )
    assert info["written"] == "sharded"
    sharded = read_cache(tmp_path / "b.h5", "ehr")
    assert list(sharded.ids) == list(reference.ids)
    np.testing.assert_array_equal(sharded.data, reference.data)
    np.testing.assert_array_equal(sharded.mask, reference.mask)
    np.testing.assert_array_equal(sharded.present, reference.present)
    assert json.loads(sharded.attrs["preprocessing"])["n_steps"] == 30


def test_a_killed_sharded_build_resumes(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "DIRECT_BYTES", 0)
    options = DiscretizerOptions()
    calls = {"n": 0}
    original = cache_module.ShardedCacheWriter.write

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self, *args)

    monkeypatch.setattr(cache_module.ShardedCacheWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        build.build_ehr_cache(inputs / "pheno.parquet", inputs / "events.parquet", tmp_path / "c.h5", options,
                              shard_size=2)  # fmt: skip
    assert not (tmp_path / "c.h5").exists() and len(list((tmp_path / "c.h5.shards").glob("shard-*.h5"))) == 2
    monkeypatch.setattr(cache_module.ShardedCacheWriter, "write", original)
    written = []

    def recording(self, shard, *args):
        written.append(shard.index)
        original(self, shard, *args)

    monkeypatch.setattr(cache_module.ShardedCacheWriter, "write", recording)
    build.build_ehr_cache(
        inputs / "pheno.parquet", inputs / "events.parquet", tmp_path / "c.h5", options, shard_size=2
    )
    assert 0 not in written and 1 not in written and len(written) > 0
    resumed = read_cache(tmp_path / "c.h5", "ehr")
    monkeypatch.setattr(build, "DIRECT_BYTES", 1 << 30)
    build.build_ehr_cache(inputs / "pheno.parquet", inputs / "events.parquet", tmp_path / "d.h5", options)
    np.testing.assert_array_equal(resumed.data, read_cache(tmp_path / "d.h5", "ehr").data)


def test_v1_and_v2_layouts_give_identical_caches(tmp_path):
    caches = {}
    for layout in ("v1", "v2"):
        work = tmp_path / layout
        hospital = mini_hospital(work / "mimic-iv", layout)
        extract_events_to(work / "events.parquet", open_source(hospital), EventOptions())
        src = DatasetSources("mini", "mimic", ("ehr",), "mimic-iv", str(hospital))
        for task in ("ihm", "pheno"):
            frame, meta = build_cohort(src, task, CohortOptions(n_folds=2), work / "events.parquet")
            write_cohort(work / f"{task}.parquet", frame, meta)
            build.build_ehr_cache(work / f"{task}.parquet", work / "events.parquet", work / f"{task}.h5",
                                  DiscretizerOptions())  # fmt: skip
            caches[(layout, task)] = read_cache(work / f"{task}.h5", "ehr")
    for task in ("ihm", "pheno"):
        v1, v2 = caches[("v1", task)], caches[("v2", task)]
        assert list(v1.ids) == list(v2.ids) and v1.present.sum() > 0
        np.testing.assert_array_equal(v1.data, v2.data)
        np.testing.assert_array_equal(v1.mask, v2.mask)
