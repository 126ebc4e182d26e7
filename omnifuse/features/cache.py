"""The feature cache: one HDF5 file per modality and cohort (DESIGN.md "Feature cache").

Layout of ``results/{dataset}/features/{task}/{modality}.h5``:

* ``ids``     (N,) UTF-8 strings, the sample ids, in the order of the rows below (unique);
* ``present`` (N,) bool, whether the sample has this modality (rows of absent samples are zeros);
* ``data``    (N, L, D) float16 or float32: L = 1 for a pooled vector, tokens, time steps or slices;
* ``mask``    (N, L) bool, valid tokens / steps / slices (all False for absent samples);
* attributes: ``modality``, ``encoder``, ``weights`` (name or sha256 of a local file),
  ``preprocessing`` (JSON), ``omnifuse_version``, ``created`` (UTC ISO time), plus any extra keys.

Files are written to a temporary name and renamed into place when complete. Long extractions use
:class:`ShardedCacheWriter`, which keeps completed shards so that a killed job resumes where it stopped.
Readers load the whole cache into memory (sorted contiguous reads, no per-sample HDF5 access).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import omnifuse
from omnifuse.io import atomic_path, write_text_atomic

STR = h5py.string_dtype("utf-8")
REQUIRED_ATTRS = ("modality", "encoder", "weights", "preprocessing")


class CacheError(ValueError):
    """A cache that is malformed or does not match what the caller expects (message names the file)."""


@dataclass
class FeatureCache:
    """A whole cache held in memory."""

    modality: str
    ids: np.ndarray  # (N,) object array of str
    present: np.ndarray  # (N,) bool
    data: np.ndarray  # (N, L, D)
    mask: np.ndarray  # (N, L) bool
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.data.ndim != 3 or self.data.shape[0] != n:
            raise CacheError(f"{self.modality}: data must be (N={n}, L, D), got {self.data.shape}")
        if self.mask.shape != self.data.shape[:2]:
            raise CacheError(f"{self.modality}: mask must be {self.data.shape[:2]}, got {self.mask.shape}")
        if self.present.shape != (n,):
            raise CacheError(f"{self.modality}: present must be ({n},), got {self.present.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def seq_len(self) -> int:
        return int(self.data.shape[1])

    @property
    def dim(self) -> int:
        return int(self.data.shape[2])

    def align(self, sample_ids: Sequence[str], allow_missing: bool = False) -> FeatureCache:
        """Rows reordered to ``sample_ids``. Ids absent from the cache raise :class:`CacheError`
        (naming the first few), unless ``allow_missing``, in which case they become absent rows."""
        index = {sid: i for i, sid in enumerate(self.ids)}
        wanted = [str(s) for s in sample_ids]
        pos = np.fromiter((index.get(s, -1) for s in wanted), dtype=np.int64, count=len(wanted))
        unknown = np.flatnonzero(pos < 0)
        if len(unknown) and not allow_missing:
            first = ", ".join(wanted[i] for i in unknown[:5])
            raise CacheError(
                f"{self.modality} cache ({self.attrs.get('path', '?')}) has no row for {len(unknown)} of "
                f"{len(wanted)} samples, e.g. {first}; was it built for another cohort?"
            )
        safe = np.maximum(pos, 0)
        found = pos >= 0
        data = self.data[safe]
        data[~found] = 0
        return FeatureCache(
            modality=self.modality,
            ids=np.asarray(wanted, dtype=object),
            present=self.present[safe] & found,
            data=data,
            mask=self.mask[safe] & found[:, None],
            attrs=dict(self.attrs),
        )


def _check_ids(path: Path, ids: np.ndarray) -> None:
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise CacheError(f"{path}: duplicate sample id {str(unique[counts > 1][0])!r}")


def _check_arrays(
    path: Path, ids: np.ndarray, present: np.ndarray, data: np.ndarray, mask: np.ndarray
) -> None:
    n = len(ids)
    _check_ids(path, ids)
    if data.ndim != 3 or data.shape[0] != n or mask.shape != data.shape[:2] or present.shape != (n,):
        raise CacheError(
            f"{path}: inconsistent shapes ids {ids.shape}, present {present.shape}, data {data.shape}, "
            f"mask {mask.shape}"
        )
    if data.dtype not in (np.float16, np.float32):
        raise CacheError(f"{path}: data must be float16 or float32, got {data.dtype}")
    bad = ~np.isfinite(data).all(axis=(1, 2))
    if bad.any():
        raise CacheError(f"{path}: non-finite values for sample {ids[np.flatnonzero(bad)[0]]!r}")


def _attrs(attrs: Mapping[str, Any], modality: str) -> dict[str, Any]:
    out = {"preprocessing": "{}", **attrs, "modality": modality}
    missing = [k for k in REQUIRED_ATTRS if k not in out]
    if missing:
        raise CacheError(f"cache attributes missing: {missing}")
    out["preprocessing"] = (
        out["preprocessing"]
        if isinstance(out["preprocessing"], str)
        else json.dumps(out["preprocessing"], sort_keys=True)
    )
    out.setdefault("omnifuse_version", omnifuse.__version__)
    out.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    return out


def write_cache(path: str | Path, cache: FeatureCache) -> None:
    """Write ``cache`` to ``path`` atomically (validated: unique ids, shapes, finite values)."""
    path = Path(path)
    ids = np.asarray([str(s) for s in cache.ids], dtype=object)
    _check_arrays(path, ids, cache.present, cache.data, cache.mask)
    attrs = _attrs(cache.attrs, cache.modality)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ids", data=ids, dtype=STR)
        f.create_dataset("present", data=cache.present.astype(bool))
        f.create_dataset("data", data=cache.data)
        f.create_dataset("mask", data=cache.mask.astype(bool))
        for key, value in attrs.items():
            if key != "path":
                f.attrs[key] = value


RowWriter = Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]


@contextmanager
def cache_rows_writer(
    path: str | Path,
    modality: str,
    ids: Sequence[str],
    seq_len: int,
    dim: int,
    attrs: Mapping[str, Any],
    dtype: str = "float16",
) -> Iterator[RowWriter]:
    """Write a cache block of rows by block, straight into the cache file: yields
    ``write(start, data, mask, present)`` for rows ``start .. start + len(data) - 1``.

    The same file as :func:`write_cache` without holding the whole cache in memory (one write of the
    data; not resumable: see :class:`ShardedCacheWriter`). Blocks are validated like ``write_cache``
    (finite values; rows of absent samples are written as zeros with an empty mask); every row must be
    written before the block ends, then the file is renamed into place."""
    path = Path(path)
    id_array = np.asarray([str(s) for s in ids], dtype=object)
    n = len(id_array)
    _check_ids(path, id_array)
    attrs = _attrs(attrs, modality)
    written = np.zeros(n, dtype=bool)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ids", data=id_array, dtype=STR)
        present_ds = f.create_dataset("present", shape=(n,), dtype=bool)
        data_ds = f.create_dataset("data", shape=(n, seq_len, dim), dtype=dtype)
        mask_ds = f.create_dataset("mask", shape=(n, seq_len), dtype=bool)

        def write(start: int, data: np.ndarray, mask: np.ndarray, present: np.ndarray) -> None:
            stop = start + len(data)
            shapes_ok = data.shape[1:] == (seq_len, dim) and mask.shape == data.shape[:2]
            if not shapes_ok or present.shape != (len(data),):
                raise CacheError(f"{path}: rows {start}..{stop - 1} have shapes {data.shape}/{mask.shape}")
            if not present.all():
                data = np.where(present[:, None, None], data, 0)
            data = data.astype(dtype, copy=False)
            _check_arrays(path, id_array[start:stop], present, data, mask)
            data_ds[start:stop] = data
            mask_ds[start:stop] = mask & present[:, None]
            present_ds[start:stop] = present
            written[start:stop] = True

        yield write
        if not written.all():
            raise CacheError(f"{path}: row {int(np.flatnonzero(~written)[0])} was not written")
        for key, value in attrs.items():
            if key != "path":
                f.attrs[key] = value


def read_cache(path: str | Path, modality: str | None = None) -> FeatureCache:
    """Load a whole cache into memory, validating it; ``modality`` (if given) must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature cache not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("ids", "present", "data", "mask") if k not in f]
            if missing:
                raise CacheError(f"{path}: missing datasets {missing}")
            ids = np.asarray(
                [s.decode("utf-8") if isinstance(s, bytes) else s for s in f["ids"][()]], dtype=object
            )
            present = f["present"][()].astype(bool)
            data = f["data"][()]
            mask = f["mask"][()].astype(bool)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise CacheError(f"{path}: not a readable HDF5 cache ({exc})") from exc
    _check_arrays(path, ids, present, data, mask)
    found = attrs.get("modality")
    if modality is not None and found != modality:
        raise CacheError(f"{path}: expected modality {modality!r}, the file says {found!r}")
    attrs["path"] = str(path)
    return FeatureCache(str(found), ids, present, data, mask, attrs)


def _fingerprint(ids: Sequence[str], spec: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for s in ids:
        h.update(s.encode("utf-8") + b"\0")
    return h.hexdigest()


class ShardedCacheWriter:
    """Resumable cache writing: rows are produced shard by shard, each shard is saved atomically
    under ``{path}.shards/``, and :meth:`finalize` merges them into the cache and removes the shards.

    A restarted job with the same ids and spec skips completed shards; a different spec (other
    encoder, weights or preprocessing) discards them. Usage::

        writer = ShardedCacheWriter(path, "cxr", ids, seq_len=1, dim=512, attrs=attrs)
        for shard in writer.pending():
            data, mask, present = encode(shard.ids)
            writer.write(shard, data, mask, present)
        writer.finalize()
    """

    @dataclass(frozen=True)
    class Shard:
        index: int
        start: int
        stop: int
        ids: tuple[str, ...]

    def __init__(
        self,
        path: str | Path,
        modality: str,
        ids: Sequence[str],
        seq_len: int,
        dim: int,
        attrs: Mapping[str, Any],
        dtype: str = "float16",
        shard_size: int = 1024,
    ) -> None:
        self.path = Path(path)
        self.modality = modality
        self.ids = [str(s) for s in ids]
        self.seq_len, self.dim = int(seq_len), int(dim)
        self.dtype = np.dtype(dtype)
        self.attrs = _attrs(attrs, modality)
        self.shard_size = int(shard_size)
        self.dir = self.path.with_name(self.path.name + ".shards")
        spec = {k: v for k, v in self.attrs.items() if k != "created"}
        spec.update(seq_len=self.seq_len, dim=self.dim, dtype=str(self.dtype), shard_size=self.shard_size)
        self.fingerprint = _fingerprint(self.ids, spec)
        marker = self.dir / "fingerprint"
        if self.dir.exists() and (not marker.is_file() or marker.read_text().strip() != self.fingerprint):
            shutil.rmtree(self.dir)  # shards of another extraction: start over
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, self.fingerprint + "\n")

    def _shard_path(self, index: int) -> Path:
        return self.dir / f"shard-{index:06d}.h5"

    def shards(self) -> Iterator[ShardedCacheWriter.Shard]:
        for index, start in enumerate(range(0, len(self.ids), self.shard_size)):
            stop = min(start + self.shard_size, len(self.ids))
            yield self.Shard(index, start, stop, tuple(self.ids[start:stop]))

    def pending(self) -> list[ShardedCacheWriter.Shard]:
        """Shards not completed yet (all of them on a fresh start)."""
        return [s for s in self.shards() if not self._shard_path(s.index).is_file()]

    def write(self, shard: Shard, data: np.ndarray, mask: np.ndarray, present: np.ndarray) -> None:
        n = shard.stop - shard.start
        expected = (n, self.seq_len, self.dim)
        if data.shape != expected or mask.shape != expected[:2] or present.shape != (n,):
            raise CacheError(
                f"{self.path}: shard {shard.index} has shapes {data.shape}/{mask.shape}, expected {expected}"
            )
        data = np.where(present[:, None, None], data, 0).astype(self.dtype)
        _check_arrays(self.path, np.asarray(shard.ids, dtype=object), present, data, mask)
        with atomic_path(self._shard_path(shard.index)) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("mask", data=mask & present[:, None])
            f.create_dataset("present", data=present)

    def finalize(self) -> None:
        """Merge every shard into the cache file (atomically) and remove the shard folder."""
        pending = self.pending()
        if pending:
            raise CacheError(
                f"{self.path}: {len(pending)} shards are not written yet (first: {pending[0].index})"
            )
        n = len(self.ids)
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as out:
            out.create_dataset("ids", data=np.asarray(self.ids, dtype=object), dtype=STR)
            present = out.create_dataset("present", shape=(n,), dtype=bool)
            data = out.create_dataset("data", shape=(n, self.seq_len, self.dim), dtype=self.dtype)
            mask = out.create_dataset("mask", shape=(n, self.seq_len), dtype=bool)
            for shard in self.shards():
                with h5py.File(self._shard_path(shard.index), "r") as f:
                    data[shard.start : shard.stop] = f["data"][()]
                    mask[shard.start : shard.stop] = f["mask"][()]
                    present[shard.start : shard.stop] = f["present"][()]
            for key, value in self.attrs.items():
                out.attrs[key] = value
        shutil.rmtree(self.dir)
