"""The feature cache: one HDF5 file per modality and cohort (docs/design.md "Feature cache").

Layout of ``results/{dataset}/features/{task}/{modality}.h5``:

* ``ids``     (N,) UTF-8 strings, the sample ids, in the order of the rows below (unique);
* ``present`` (N,) bool, whether the sample has this modality (rows of absent samples are zeros);
* ``data``    (N, L, D) float16 or float32: L = 1 for a pooled vector, tokens, time steps or slices;
* ``mask``    (N, L) bool, valid tokens / steps / slices (all False for absent samples);
* ``status``  (N,) uint8, the extraction report of each row: 0 missing, 1 ok, 2 failed (:data:`STATUS`);
* attributes: ``modality``, ``encoder``, ``weights`` (name or sha256 of a local file),
  ``preprocessing`` (JSON), ``omnifuse_version``, ``created`` (UTC ISO time); the cohort it was built
  for (``cohort``, ``cohort_sha256``, ``dataset``, ``task``, ``window``:
  :class:`omnifuse.formats.cohort.CohortRef`); where it was computed (``device``, ``precision``,
  ``host_cpu``, ``host_gpu``, library versions); plus any extra keys.

Provenance is checked on every read for a cohort (:func:`load_for_cohort`, :func:`cohort_availability`
with ``cohort=``): the cohort attributes must match the cohort's, and the availability must equal the
cohort's ``has_<modality>`` except where the cache's own status says missing or failed. A cache without
the cohort attributes (older omnifuse) is an error that says to rebuild it.

Files are written to a temporary name and renamed into place when complete. Long extractions use
:class:`ShardedCacheWriter`, which keeps completed shards so that a killed job resumes where it stopped;
each shard records a digest of its inputs (paths, sizes, modification times), so a changed input makes
its shard run again.
Readers load the whole cache into memory (sorted contiguous reads, no per-sample HDF5 access).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import omnifuse
from omnifuse.formats.atomic import atomic_path, write_text_atomic
from omnifuse.formats.cohort import CohortRef

STR = h5py.string_dtype("utf-8")
REQUIRED_ATTRS = ("modality", "encoder", "weights", "preprocessing")
STATUS = {"missing": 0, "ok": 1, "failed": 2}  # codes of the ``status`` dataset
STATUS_NAMES = {code: name for name, code in STATUS.items()}


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
    status: np.ndarray | None = None  # (N,) uint8 codes of STATUS; None: not recorded

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


def _check_arrays(
    path: Path, ids: np.ndarray, present: np.ndarray, data: np.ndarray, mask: np.ndarray
) -> None:
    n = len(ids)
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise CacheError(f"{path}: duplicate sample id {str(unique[counts > 1][0])!r}")
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


def _status_codes(path: Path, status: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Checked status codes: a present row must be ``ok``; an absent row marked ``ok`` (e.g. a row
    emptied after encoding) becomes ``missing``."""
    codes = np.asarray(status, dtype=np.uint8)
    if codes.shape != present.shape or not np.isin(codes, list(STATUS_NAMES)).all():
        raise CacheError(f"{path}: status must be ({len(present)},) codes {STATUS}")
    if (present & (codes != STATUS["ok"])).any():
        raise CacheError(f"{path}: a present row must have status 'ok'")
    return np.where(~present & (codes == STATUS["ok"]), STATUS["missing"], codes).astype(np.uint8)


def status_from_present(present: np.ndarray) -> np.ndarray:
    """Status codes of a cache without failures: ``ok`` where present, else ``missing``."""
    return np.where(np.asarray(present, dtype=bool), STATUS["ok"], STATUS["missing"]).astype(np.uint8)


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
        if cache.status is not None:
            f.create_dataset("status", data=_status_codes(path, cache.status, cache.present))
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
            status = f["status"][()].astype(np.uint8) if "status" in f else None
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"{path}: not a readable HDF5 cache ({' '.join(str(exc).split())})") from exc
    _check_arrays(path, ids, present, data, mask)
    found = attrs.get("modality")
    if modality is not None and found != modality:
        raise CacheError(f"{path}: expected modality {modality!r}, the file says {found!r}")
    if status is not None and status.shape != present.shape:
        raise CacheError(f"{path}: status has shape {status.shape}, expected {present.shape}")
    attrs["path"] = str(path)
    return FeatureCache(str(found), ids, present, data, mask, attrs, status)


def _read_light(
    path: Path, modality: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(ids, present, status, attrs) of a cache without loading its data."""
    if not path.is_file():
        raise FileNotFoundError(f"feature cache not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            ids = np.asarray(
                [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()]], dtype=object
            )
            present = f["present"][()].astype(bool)
            status = f["status"][()].astype(np.uint8) if "status" in f else None
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"{path}: not a readable feature cache ({' '.join(str(exc).split())})") from exc
    found = attrs.get("modality")
    if modality is not None and found != modality:
        raise CacheError(f"{path}: expected modality {modality!r}, the file says {found!r}")
    if present.shape != ids.shape or (status is not None and status.shape != ids.shape):
        raise CacheError(f"{path}: ids, present and status have different lengths")
    attrs["path"] = str(path)
    return ids, present, status, attrs


def read_presence(path: str | Path, modality: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, present) of a cache without loading its data."""
    ids, present, _, _ = _read_light(Path(path), modality)
    return ids, present


def check_provenance(path: str | Path, attrs: Mapping[str, Any], cohort: CohortRef) -> None:
    """:class:`CacheError` naming the cache, the attribute and both values unless the cache was built
    for ``cohort`` (same dataset, task, window and cohort sha256)."""
    if "cohort_sha256" not in attrs:
        raise CacheError(
            f"{path}: the cache records no cohort provenance (attribute cohort_sha256; built by an older "
            f"omnifuse or by other means); rebuild it for the cohort {cohort.path}"
        )
    found = cohort.mismatch(dict(attrs))
    if found is not None:
        key, recorded, mine = found
        raise CacheError(
            f"{path}: built for {key} {recorded!r} (cohort {attrs.get('cohort', '?')}), but the cohort "
            f"{cohort.path} has {key} {mine!r}; the cache belongs to another cohort, task or window: "
            "rebuild it for this cohort"
        )


def check_availability(
    path: Path,
    modality: str,
    ids: Sequence[str],
    has: np.ndarray,
    rows: np.ndarray,
    present: np.ndarray,
    status: np.ndarray | None,
) -> None:
    """The cache's availability must equal the cohort's ``has_<modality>``, except for samples the
    cache's own status marks missing (nothing to encode) or failed (unreadable input)."""
    if status is None:
        raise CacheError(
            f"{path}: the cache records no per-sample status (built by an older omnifuse); rebuild it"
        )
    found = rows >= 0
    row_status = np.where(found, status[np.maximum(rows, 0)], STATUS["missing"])
    row_present = found & present[np.maximum(rows, 0)]
    unexplained = np.flatnonzero(has & found & ~row_present & (row_status == STATUS["ok"]))
    inconsistent = np.flatnonzero(row_present & (row_status != STATUS["ok"]))
    for bad, what in ((unexplained, "status ok but not present"), (inconsistent, "present but not ok")):
        if bad.size:
            raise CacheError(
                f"{path}: {bad.size} sample(s) have has_{modality} true in the cohort and {what} in the "
                f"cache, e.g. {[str(ids[i]) for i in bad[:3]]}; the cache is damaged: rebuild it"
            )


def _cohort_rows(
    path: Path,
    modality: str,
    cache_ids: np.ndarray,
    cache_present: np.ndarray,
    sample_ids: Sequence[str],
    has: np.ndarray | None,
    strict: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(row of each sample in the cache or -1, availability = row exists & present & has)."""
    index = {str(s): i for i, s in enumerate(cache_ids)}
    wanted = [str(s) for s in sample_ids]
    rows = np.fromiter((index.get(s, -1) for s in wanted), dtype=np.int64, count=len(wanted))
    has = np.ones(len(wanted), bool) if has is None else np.asarray(has, dtype=bool)
    if strict:
        absent = np.flatnonzero(has & (rows < 0))
        if absent.size:
            raise CacheError(
                f"{path}: no row for {absent.size} sample(s) the cohort says have {modality}, e.g. "
                f"{[wanted[i] for i in absent[:3]]}; was the cache built for another cohort?"
            )
        extra = np.flatnonzero(~has & (rows >= 0) & cache_present[np.maximum(rows, 0)])
        if extra.size:
            raise CacheError(
                f"{path}: {extra.size} sample(s) present in the cache but not available in the cohort "
                f"(has_{modality} false), e.g. {[wanted[i] for i in extra[:3]]}; was the cache built for "
                "another cohort?"
            )
    available = has & (rows >= 0) & cache_present[np.maximum(rows, 0)]
    return rows, available


def _verified_rows(
    path: Path,
    modality: str,
    cache_ids: np.ndarray,
    cache_present: np.ndarray,
    status: np.ndarray | None,
    attrs: Mapping[str, Any],
    sample_ids: Sequence[str],
    has: np.ndarray | None,
    strict: bool,
    cohort: CohortRef | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_cohort_rows` after the provenance check (when ``cohort`` is given), then the
    availability check."""
    if cohort is not None:
        check_provenance(path, attrs, cohort)
    rows, available = _cohort_rows(path, modality, cache_ids, cache_present, sample_ids, has, strict)
    if cohort is not None and has is not None:
        ids = [str(s) for s in sample_ids]
        check_availability(path, modality, ids, np.asarray(has, bool), rows, cache_present, status)
    return rows, available


def cohort_availability(
    path: str | Path,
    modality: str,
    sample_ids: Sequence[str],
    has: np.ndarray | None = None,
    strict: bool = True,
    cohort: CohortRef | None = None,
) -> np.ndarray:
    """Availability of ``modality`` for each of ``sample_ids`` (rules and checks of
    :func:`load_for_cohort`), without loading the features."""
    path = Path(path)
    ids, present, status, attrs = _read_light(path, modality)
    return _verified_rows(path, modality, ids, present, status, attrs, sample_ids, has, strict, cohort)[1]


def load_for_cohort(
    path: str | Path,
    modality: str,
    sample_ids: Sequence[str],
    has: np.ndarray | None = None,
    strict: bool = True,
    cohort: CohortRef | None = None,
) -> FeatureCache:
    """The one way a later stage reads a cache for a cohort: the rows of ``sample_ids``, in that order.

    ``has`` is the cohort's ``has_<modality>`` for those samples (None: every sample may have it). A row
    is present when the cache has it, marks it present, and the cohort says the sample has the
    modality; every other row is absent (zeros; the mask is the cache's, all False without a row).
    ``strict`` (the default for a cohort
    and its own caches) also requires that every sample the cohort says has the modality has a row, and
    that no sample the cohort says lacks it is present in the cache: either means the cache was built
    for another cohort (:class:`CacheError` naming the file and the first samples).

    ``cohort`` (the :class:`omnifuse.formats.cohort.CohortRef` of the cohort ``sample_ids`` and ``has``
    come from; every pipeline stage passes it) also checks the cache's provenance: built for this
    cohort (dataset, task, window, cohort sha256; :func:`check_provenance`), and its availability
    equal to ``has`` except where its status says missing or failed (:func:`check_availability`).
    """
    path = Path(path)
    cache = read_cache(path, modality=modality)
    rows, available = _verified_rows(
        path, modality, cache.ids, cache.present, cache.status, cache.attrs, sample_ids, has, strict, cohort
    )
    safe = np.maximum(rows, 0)
    data = cache.data[safe]
    data[~available] = 0
    return FeatureCache(
        modality=cache.modality,
        ids=np.asarray([str(s) for s in sample_ids], dtype=object),
        present=available,
        data=data,
        mask=cache.mask[safe] & (rows >= 0)[:, None],
        attrs=dict(cache.attrs),
        status=None if cache.status is None else np.where(rows >= 0, cache.status[safe], STATUS["missing"]),
    )


def _fingerprint(ids: Sequence[str], spec: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for s in ids:
        h.update(s.encode("utf-8") + b"\0")
    return h.hexdigest()


class ShardedCacheWriter:
    """Resumable cache writing: rows are produced shard by shard, each shard is saved atomically
    under ``{path}.shards/``, and :meth:`finalize` merges them into the cache and removes the shards.

    A restarted job with the same ids and spec skips completed shards; a different spec (other
    encoder, weights or preprocessing) discards them. ``input_keys`` (one string per sample: its input
    path, availability, size and modification time) are digested per shard and stored with it, so a
    shard whose inputs changed since it was written is pending again (the other shards are kept); the
    attribute ``inputs_sha256`` (over every input) is left out of the spec for that reason. Usage::

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
        input_keys: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.modality = modality
        self.ids = [str(s) for s in ids]
        self.seq_len, self.dim = int(seq_len), int(dim)
        self.dtype = np.dtype(dtype)
        self.attrs = _attrs(attrs, modality)
        self.shard_size = int(shard_size)
        if input_keys is not None and len(input_keys) != len(self.ids):
            raise CacheError(f"{self.path}: {len(input_keys)} input keys for {len(self.ids)} samples")
        self.input_keys = [str(k) for k in input_keys] if input_keys is not None else [""] * len(self.ids)
        self.dir = self.path.with_name(self.path.name + ".shards")
        spec = {k: v for k, v in self.attrs.items() if k not in ("created", "inputs_sha256")}
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

    def shard_inputs(self, shard: Shard) -> str:
        """Digest of the input keys of a shard's samples."""
        return _fingerprint(self.input_keys[shard.start : shard.stop], {"shard": shard.index})

    def _done(self, shard: Shard) -> bool:
        """Written, and from the inputs as they are now (a shard without the record counts as stale)."""
        path = self._shard_path(shard.index)
        if not path.is_file():
            return False
        try:
            with h5py.File(path, "r") as f:
                recorded = f.attrs.get("inputs_sha256")
        except OSError:
            return False  # unreadable (e.g. a damaged disk): written again
        recorded = recorded.decode() if isinstance(recorded, bytes) else recorded
        return recorded == self.shard_inputs(shard)

    def pending(self) -> list[ShardedCacheWriter.Shard]:
        """Shards not completed yet, or whose inputs changed since (all of them on a fresh start)."""
        return [s for s in self.shards() if not self._done(s)]

    def write(
        self,
        shard: Shard,
        data: np.ndarray,
        mask: np.ndarray,
        present: np.ndarray,
        status: np.ndarray | None = None,
    ) -> None:
        """Save one shard (``status``: the extraction report codes, default ok / missing by
        ``present``)."""
        n = shard.stop - shard.start
        expected = (n, self.seq_len, self.dim)
        if data.shape != expected or mask.shape != expected[:2] or present.shape != (n,):
            raise CacheError(
                f"{self.path}: shard {shard.index} has shapes {data.shape}/{mask.shape}, expected {expected}"
            )
        data = np.where(present[:, None, None], data, 0).astype(self.dtype)
        _check_arrays(self.path, np.asarray(shard.ids, dtype=object), present, data, mask)
        codes = _status_codes(
            self.path, status if status is not None else status_from_present(present), present
        )
        with atomic_path(self._shard_path(shard.index)) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("mask", data=mask & present[:, None])
            f.create_dataset("present", data=present)
            f.create_dataset("status", data=codes)
            f.attrs["inputs_sha256"] = self.shard_inputs(shard)

    def finalize(self) -> None:
        """Merge every shard into the cache file (atomically) and remove the shard folder."""
        pending = self.pending()
        if pending:
            raise CacheError(
                f"{self.path}: {len(pending)} shards are not written yet, or their inputs changed since "
                f"(first: {pending[0].index})"
            )
        n = len(self.ids)
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as out:
            out.create_dataset("ids", data=np.asarray(self.ids, dtype=object), dtype=STR)
            present = out.create_dataset("present", shape=(n,), dtype=bool)
            data = out.create_dataset("data", shape=(n, self.seq_len, self.dim), dtype=self.dtype)
            mask = out.create_dataset("mask", shape=(n, self.seq_len), dtype=bool)
            status = out.create_dataset("status", shape=(n,), dtype=np.uint8)
            for shard in self.shards():
                with h5py.File(self._shard_path(shard.index), "r") as f:
                    data[shard.start : shard.stop] = f["data"][()]
                    mask[shard.start : shard.stop] = f["mask"][()]
                    present[shard.start : shard.stop] = f["present"][()]
                    status[shard.start : shard.stop] = f["status"][()]
            for key, value in self.attrs.items():
                out.attrs[key] = value
        shutil.rmtree(self.dir)
