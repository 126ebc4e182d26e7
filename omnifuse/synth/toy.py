"""Small synthetic cohorts + feature caches in the real formats, for tests and benchmarks of stage 2.

Not the demo data (that comes from the synthetic hospital through stages 0-1): these are planted-signal
tables written directly with :func:`omnifuse.formats.cohort.write_cohort` and
:func:`omnifuse.formats.cache.write_cache`, so that the trainer can be exercised on any task kind,
any number of modalities and any cache shape in seconds.

A latent vector z (per sample) drives the labels (binary: a thresholded projection with the requested
prevalence; multilabel: one projection per label; multiclass: the argmax of one projection per class)
and every modality: each valid step of modality m is ``signal_m · (z @ A_m) + noise`` (then, for
``ehr``-named modalities, put on raw clinical-looking scales channel by channel so that per-fold
z-scoring matters). Sequences have random valid lengths; availability is random per modality with at
least one modality per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from omnifuse.formats.cache import FeatureCache, status_from_present, write_cache
from omnifuse.formats.cohort import CohortMeta, CohortRef, write_cohort

DEFAULT_SHAPES: dict[str, tuple[int, int]] = {"ehr": (24, 76), "cxr": (1, 512), "rep": (150, 384)}


@dataclass
class ToySpec:
    n: int = 300
    kind: str = "binary"  # binary | multilabel | multiclass
    n_labels: int = 3  # multilabel: labels; multiclass: classes
    shapes: Mapping[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_SHAPES))
    signal: Mapping[str, float] = field(default_factory=dict)  # per modality, default 1.0
    availability: Mapping[str, float] = field(default_factory=dict)  # per modality, default 1.0
    noise: float = 1.0
    latent: int = 8
    prevalence: float = 0.3  # binary only
    n_folds: int = 5
    seed: int = 0
    dtype: str = "float16"
    min_valid: float = 0.5  # sequences: valid length uniform in [min_valid·L, L]


def toy_labels(
    z: np.ndarray, spec: ToySpec, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], list[str]]:
    """(labels (N, K) or (N,), label columns, label names)."""
    if spec.kind == "binary":
        score = z @ rng.normal(size=spec.latent)
        y = (score > np.quantile(score, 1 - spec.prevalence)).astype(np.int64)
        return y[:, None], ["y_label"], ["label"]
    if spec.kind == "multilabel":
        w = rng.normal(size=(spec.latent, spec.n_labels))
        scores = z @ w
        y = (scores > np.quantile(scores, 0.6, axis=0)).astype(np.int64)
        names = [f"pheno{j}" for j in range(spec.n_labels)]
        return y, [f"y_{n}" for n in names], names
    w = rng.normal(size=(spec.latent, spec.n_labels))
    y = (z @ w).argmax(1).astype(np.int64)
    return y[:, None], ["y_class"], [f"L{j + 1}" for j in range(spec.n_labels)]


def make_toy_run(
    out: str | Path, spec: ToySpec | None = None, modality_data: Mapping[str, np.ndarray] | None = None
) -> tuple[Path, dict[str, Path]]:
    """Write ``out/cohort.parquet`` and ``out/<modality>.h5``; return their paths.

    ``modality_data`` may supply a modality's (N, L, D) data directly (e.g. a planted linear relation)."""
    spec = spec or ToySpec()
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    n = spec.n
    z = rng.normal(size=(n, spec.latent))
    y, label_cols, label_names = toy_labels(z, spec, rng)
    modalities = tuple(spec.shapes)
    # patients own one or two samples; folds are patient-level
    patient_of = np.cumsum(rng.random(n) > 0.3) - 1
    patient_ids = np.array([f"P{p:05d}" for p in patient_of], dtype=object)
    n_pat = int(patient_of.max()) + 1
    pat_fold = rng.permutation(np.arange(n_pat) % spec.n_folds)
    folds = pat_fold[patient_of]
    avail = np.stack([rng.random(n) < spec.availability.get(m, 1.0) for m in modalities], 1)
    none = ~avail.any(1)
    avail[none, rng.integers(0, len(modalities), size=int(none.sum()))] = True
    ids = np.array([f"S{i:06d}" for i in range(n)], dtype=object)
    frame = pl.DataFrame(
        {
            "sample_id": ids.astype(str),
            "patient_id": patient_ids.astype(str),
            "fold": folds.astype(np.int64),
            **{c: y[:, k] for k, c in enumerate(label_cols)},
            **{f"has_{m}": avail[:, j] for j, m in enumerate(modalities)},
        }
    )
    meta = CohortMeta(
        dataset="toy",
        task=spec.kind,
        kind=spec.kind,
        label_columns=tuple(label_cols),
        label_names=tuple(label_names),
        modalities=modalities,
        n_folds=spec.n_folds,
    )
    cohort = out / "cohort.parquet"
    ref = CohortRef.of(cohort, frame, meta)  # the caches record the cohort they belong to
    caches: dict[str, Path] = {}
    for j, m in enumerate(modalities):
        length, dim = spec.shapes[m]
        if modality_data is not None and m in modality_data:
            data = np.asarray(modality_data[m], dtype=np.float32)
        else:
            a = rng.normal(size=(spec.latent, dim)) / np.sqrt(spec.latent)
            base = spec.signal.get(m, 1.0) * (z @ a)  # (N, D)
            data = base[:, None, :] + spec.noise * rng.normal(size=(n, length, dim))
            if m == "ehr":
                centre = rng.uniform(-50, 150, size=dim)
                scale = rng.uniform(0.5, 30, size=dim)
                data = centre + scale * data
            data = data.astype(np.float32)
        valid = np.ones((n, length), dtype=bool)
        if length > 1:
            lengths = rng.integers(max(1, int(spec.min_valid * length)), length + 1, size=n)
            valid = np.arange(length)[None, :] < lengths[:, None]
        data = np.where(valid[:, :, None] & avail[:, j, None, None], data, 0).astype(spec.dtype)
        mask = valid & avail[:, j, None]
        prep = {"toy": True, **({"continuous_columns": list(range(dim))} if m == "ehr" else {})}
        attrs = {"encoder": "toy", "weights": "none", "preprocessing": prep, **ref.cache_attrs()}
        present = avail[:, j].copy()
        cache = FeatureCache(m, ids.copy(), present, data, mask, attrs, status_from_present(present))
        caches[m] = out / f"{m}.h5"
        write_cache(caches[m], cache)
    write_cohort(cohort, frame, meta)
    return cohort, caches
