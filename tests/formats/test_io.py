"""Atomic, deterministic writes."""

from __future__ import annotations

import gzip
import os

import pytest

from omnifuse.formats.atomic import atomic_dir, atomic_path, gzip_bytes, gzip_text_writer, write_text_atomic


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_writes_get_umask_permissions(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_gzip_is_byte_deterministic_and_readable(tmp_path):
    assert gzip_bytes(b"abc" * 100) == gzip_bytes(b"abc" * 100)
    with gzip_text_writer(tmp_path / "t.csv.gz") as f:
        f.write("a,b\n1,2\n")
    first = (tmp_path / "t.csv.gz").read_bytes()
    with gzip_text_writer(tmp_path / "t.csv.gz") as f:
        f.write("a,b\n1,2\n")
    assert (tmp_path / "t.csv.gz").read_bytes() == first
    assert gzip.decompress(first) == b"a,b\n1,2\n"


def test_atomic_dir_refuses_existing_then_replaces_with_overwrite(tmp_path):
    out = tmp_path / "cohort"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError, match="cohort"), atomic_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # untouched by the failed attempt
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # no temporary leftovers
