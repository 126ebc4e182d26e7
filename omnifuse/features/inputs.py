"""The identity of each raw input as it is now, for resumable extraction and the cache's digest.

A sample's key is its input path relative to the root, whether the cohort says it is available, and
the file's size and modification time (``st_mtime_ns``); for a DICOM series folder, those of every file
in it. A changed input (replaced image, added or removed slice) changes the key, so the shard that
holds it is extracted again (:class:`omnifuse.formats.cache.ShardedCacheWriter`) and the cache's
``inputs_sha256`` changes. Size and modification time rather than content: one ``stat`` per file costs
microseconds, a content hash reads every byte a second time (measured in docs/design.md, "Feature
cache"); a file rewritten with the same size within the same nanosecond timestamp would go unnoticed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from omnifuse.features.engine import Sample


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def input_state(path: Path | None) -> str:
    """``size:mtime_ns`` of a file; a digest of every file's name, size and mtime for a folder;
    ``absent`` / ``none`` when there is nothing (the sample then fails or is missing anyway)."""
    if path is None:
        return "none"
    try:
        if path.is_dir():
            digest = hashlib.sha256()
            with os.scandir(path) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_file():
                        st = entry.stat()
                        digest.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return "dir:" + digest.hexdigest()
        return _stat(path)
    except OSError:
        return "absent"


def relative(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def with_keys(samples: Sequence[Sample], root: Path) -> list[Sample]:
    """``samples`` with their keys set (available samples only: the others are never read)."""
    out = []
    for s in samples:
        state = input_state(s.path) if s.available else "-"
        out.append(replace(s, key=f"{relative(s.path, root)}\0{int(s.available)}\0{state}"))
    return out


def inputs_digest(samples: Sequence[Sample]) -> str:
    """sha256 of every (sample id, key): a changed cohort, pairing or input file changes it."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.sample_id}\0{s.key}\n".encode())
    return digest.hexdigest()
