"""Loading a feature cache for a cohort: rows in the cohort's order, checked against the cohort.

Rules: the cache must have a row for every requested sample (a cache built for another cohort is an
error naming the file and the first missing ids); a sample the cache marks present must be available
in the cohort (``has_<modality>``). With ``sample_ids`` only those rows are read from the file, in
one pass over sorted row indices (h5py reads increasing indices; the result is reordered after).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from omnifuse.cohort import read_cohort
from omnifuse.features.cache import CacheError, FeatureCache, read_cache


def read_cache_rows(path: str | Path, sample_ids: Sequence[str], modality: str | None = None) -> FeatureCache:
    """Only the rows of ``sample_ids`` (in that order), read with sorted indices."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()]]
        index = {sid: i for i, sid in enumerate(ids)}
        wanted = [str(s) for s in sample_ids]
        unknown = [s for s in wanted if s not in index]
        if unknown:
            raise CacheError(f"{path}: no row for {len(unknown)} requested samples, e.g. {unknown[:5]}")
        rows = np.asarray([index[s] for s in wanted], dtype=np.int64)
        order = np.unique(rows)  # sorted, unique: what h5py can read in one go
        data = f["data"][order] if len(order) else np.zeros((0, *f["data"].shape[1:]), f["data"].dtype)
        mask = f["mask"][order] if len(order) else np.zeros((0, f["mask"].shape[1]), bool)
        present = f["present"][order] if len(order) else np.zeros(0, bool)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    where = np.searchsorted(order, rows)
    found = attrs.get("modality")
    if modality is not None and found != modality:
        raise CacheError(f"{path}: expected modality {modality!r}, the file says {found!r}")
    attrs["path"] = str(path)
    return FeatureCache(
        str(found), np.asarray(wanted, dtype=object), present[where].astype(bool), data[where],
        mask[where].astype(bool), attrs,
    )  # fmt: skip


def load_for_cohort(
    path: str | Path,
    cohort: str | Path | pl.DataFrame,
    modality: str,
    sample_ids: Sequence[str] | None = None,
) -> FeatureCache:
    """The ``modality`` cache aligned to the cohort table (all its samples, or ``sample_ids``)."""
    frame = read_cohort(cohort)[0] if not isinstance(cohort, pl.DataFrame) else cohort
    wanted = [str(s) for s in (sample_ids if sample_ids is not None else frame["sample_id"].to_list())]
    if sample_ids is None:
        cache = read_cache(path, modality=modality).align(wanted)
    else:
        cache = read_cache_rows(path, wanted, modality=modality)
    column = f"has_{modality}"
    if column in frame.columns:
        has = dict(zip(frame["sample_id"].to_list(), frame[column].to_list(), strict=True))
        bad = [s for s, p in zip(cache.ids, cache.present, strict=True) if p and not has.get(s, False)]
        if bad:
            raise CacheError(
                f"{path}: {len(bad)} sample(s) present in the cache but not available in the cohort "
                f"({column} false or unknown), e.g. {bad[:5]}; was the cache built for another cohort?"
            )
    return cache
