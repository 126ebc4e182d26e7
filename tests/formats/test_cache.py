"""Feature cache round trip, validation, alignment and resumable sharded writing."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from omnifuse.formats.cache import (
    CacheError,
    FeatureCache,
    ShardedCacheWriter,
    cache_rows_writer,
    read_cache,
    write_cache,
)

ATTRS = {"encoder": "resnet34", "weights": "none", "preprocessing": {"size": 224}}


def make_cache(n=5, seq=3, dim=4, dtype=np.float16):
    rng = np.random.default_rng(0)
    present = np.array([True, False, True, True, False][:n])
    data = rng.normal(size=(n, seq, dim)).astype(dtype) * present[:, None, None]
    mask = np.tile(present[:, None], (1, seq))
    return FeatureCache(
        "cxr", np.array([f"s{i}" for i in range(n)], dtype=object), present, data, mask, dict(ATTRS)
    )


def test_round_trip_keeps_everything(tmp_path):
    cache = make_cache()
    write_cache(tmp_path / "cxr.h5", cache)
    back = read_cache(tmp_path / "cxr.h5", modality="cxr")
    assert list(back.ids) == list(cache.ids)
    np.testing.assert_array_equal(back.data, cache.data)
    np.testing.assert_array_equal(back.mask, cache.mask)
    np.testing.assert_array_equal(back.present, cache.present)
    assert back.attrs["encoder"] == "resnet34" and back.attrs["preprocessing"] == '{"size": 224}'
    assert back.attrs["omnifuse_version"] and back.attrs["created"]
    assert back.data.dtype == np.float16
    with pytest.raises(CacheError, match=r"expected modality 'rep'"):
        read_cache(tmp_path / "cxr.h5", modality="rep")


def test_bad_caches_are_refused_with_the_sample_named(tmp_path):
    cache = make_cache()
    cache.ids[3] = "s0"
    with pytest.raises(CacheError, match=r"duplicate sample id 's0'"):
        write_cache(tmp_path / "dup.h5", cache)
    cache = make_cache(dtype=np.float32)
    cache.data[2, 0, 0] = np.nan
    with pytest.raises(CacheError, match=r"'s2'"):
        write_cache(tmp_path / "nan.h5", cache)
    assert not (tmp_path / "nan.h5").exists()
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match=r"junk\.h5"):
        read_cache(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        read_cache(tmp_path / "missing.h5")


def test_align_reorders_and_names_unknown_ids():
    cache = make_cache()
    aligned = cache.align(["s3", "s0"])
    assert list(aligned.ids) == ["s3", "s0"]
    np.testing.assert_array_equal(aligned.data[0], cache.data[3])
    with pytest.raises(CacheError, match=r"e\.g\. zz"):
        cache.align(["s0", "zz"])
    loose = cache.align(["s0", "zz"], allow_missing=True)
    assert list(loose.present) == [True, False] and not loose.data[1].any() and not loose.mask[1].any()


def test_sharded_writer_resumes_after_a_kill_and_matches_a_straight_run(tmp_path):
    ids = [f"s{i}" for i in range(10)]
    rng = np.random.default_rng(1)
    data = rng.normal(size=(10, 2, 3)).astype(np.float32)
    present = np.arange(10) % 4 != 1
    mask = np.ones((10, 2), bool)

    def run(path, stop_after=None):
        writer = ShardedCacheWriter(path, "rep", ids, seq_len=2, dim=3, attrs=ATTRS, shard_size=3)
        done = 0
        for shard in writer.pending():
            if stop_after is not None and done == stop_after:
                raise KeyboardInterrupt  # simulated kill
            sl = slice(shard.start, shard.stop)
            writer.write(shard, data[sl], mask[sl], present[sl])
            done += 1
        writer.finalize()
        return done

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "a.h5", stop_after=2)
    assert not (tmp_path / "a.h5").exists()
    assert run(tmp_path / "a.h5") == 2  # only the 2 remaining of 4 shards
    assert run(tmp_path / "b.h5") == 4
    a, b = read_cache(tmp_path / "a.h5"), read_cache(tmp_path / "b.h5")
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.present, present)
    assert not a.data[~present].any() and not a.mask[~present].any()
    assert not (tmp_path / "a.h5.shards").exists()
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["data"].dtype == np.float16


def test_sharded_writer_discards_shards_of_another_spec(tmp_path):
    ids = ["a", "b", "c"]
    w = ShardedCacheWriter(tmp_path / "x.h5", "cxr", ids, 1, 2, ATTRS, shard_size=2)
    shard = w.pending()[0]
    w.write(shard, np.ones((2, 1, 2)), np.ones((2, 1), bool), np.ones(2, bool))
    assert len(w.pending()) == 1
    other = ShardedCacheWriter(
        tmp_path / "x.h5", "cxr", ids, 1, 2, {**ATTRS, "weights": "imagenet"}, shard_size=2
    )
    assert len(other.pending()) == 2


def test_rows_writer_gives_the_file_of_write_cache_in_bounded_blocks(tmp_path):
    cache = make_cache()
    write_cache(tmp_path / "whole.h5", cache)
    unmasked = np.where(cache.present[:, None, None], cache.data, 1)  # the writer zeroes absent rows
    with cache_rows_writer(
        tmp_path / "rows.h5", "cxr", list(cache.ids), 3, 4, dict(ATTRS), "float16"
    ) as write:
        for start in (0, 2, 4):
            stop = min(start + 2, len(cache))
            full_mask = np.ones((stop - start, 3), bool)
            write(start, unmasked[start:stop], full_mask, cache.present[start:stop])
    with h5py.File(tmp_path / "whole.h5") as a, h5py.File(tmp_path / "rows.h5") as b:
        for name in ("ids", "present", "data", "mask"):
            np.testing.assert_array_equal(a[name][()], b[name][()])
            assert a[name].dtype == b[name].dtype
    with (
        pytest.raises(CacheError, match="row 4 was not written"),
        cache_rows_writer(tmp_path / "partial.h5", "cxr", list(cache.ids), 3, 4, dict(ATTRS)) as write,
    ):
        write(0, cache.data[:4], cache.mask[:4], cache.present[:4])
    assert not (tmp_path / "partial.h5").exists()
    with pytest.raises(CacheError, match="duplicate sample id"):
        cache_rows_writer(tmp_path / "dup.h5", "cxr", ["a", "a"], 3, 4, dict(ATTRS)).__enter__()
