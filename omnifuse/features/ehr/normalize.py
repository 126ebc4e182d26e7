"""Per-fold z-scoring of the 12 continuous EHR columns (the cache stores raw discretized values).

Rule (mimic3-benchmarks ``Normalizer``, with statistics from the training folds only, never from
another dataset): mean and standard deviation (ddof 1, floored at 1e-7) of each continuous column over
every valid time step (imputed steps included, padding excluded) of the training samples that have
EHR. One-hot and mask columns are left as they are. Padding steps stay 0.

Usage in a trainer::

    cache = read_cache("results/mimic/features/ihm/ehr.h5", "ehr")
    norm = fit_normalizer(cache, train_ids)
    data = norm.apply(cache.data, cache.mask)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnifuse.features.cache import FeatureCache
from omnifuse.features.ehr.channels import channel_spec

STD_FLOOR = 1e-7


def continuous_columns(cache: FeatureCache) -> list[int]:
    """The continuous columns recorded in the cache (fallback: the channel definition)."""
    pre = cache.attrs.get("preprocessing", "{}")
    pre = json.loads(pre) if isinstance(pre, str) else pre
    return list(pre.get("continuous_columns") or channel_spec().continuous_columns())


@dataclass(frozen=True)
class EhrNormalizer:
    columns: tuple[int, ...]
    mean: np.ndarray  # (len(columns),)
    std: np.ndarray

    def apply(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """A float32 copy of ``data`` (N, L, D) with the continuous columns z-scored; steps where
        ``mask`` (N, L) is False are left at 0."""
        out = np.array(data, dtype=np.float32, copy=True)
        cols = list(self.columns)
        out[..., cols] = (out[..., cols] - self.mean.astype(np.float32)) / self.std.astype(np.float32)
        if mask is not None:
            out[~mask.astype(bool)] = 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EhrNormalizer:
        return cls(
            tuple(raw["columns"]), np.asarray(raw["mean"], np.float64), np.asarray(raw["std"], np.float64)
        )


def fit_normalizer(cache: FeatureCache, train_ids: Sequence[str]) -> EhrNormalizer:
    """Statistics of the continuous columns over the valid steps of the training samples with EHR."""
    cols = continuous_columns(cache)
    train = cache.align(train_ids)
    valid = train.mask & train.present[:, None]
    values = train.data[valid][:, cols].astype(np.float64)
    if len(values) < 2:
        raise ValueError(
            f"cannot fit EHR normalisation: {len(values)} valid time step(s) among "
            f"{len(train_ids)} training samples"
        )
    mean = values.mean(axis=0)
    std = np.maximum(values.std(axis=0, ddof=1), STD_FLOOR)
    return EhrNormalizer(tuple(cols), mean, std)


def normalize_fold(cache: FeatureCache, train_ids: Sequence[str]) -> tuple[FeatureCache, EhrNormalizer]:
    """The whole cache z-scored with the statistics of ``train_ids`` (convenience for trainers)."""
    norm = fit_normalizer(cache, train_ids)
    data = norm.apply(cache.data, cache.mask & cache.present[:, None])
    out = FeatureCache(cache.modality, cache.ids, cache.present, data, cache.mask, dict(cache.attrs))
    return out, norm
