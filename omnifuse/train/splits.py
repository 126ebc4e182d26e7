"""Patient-level inner splits of a training fold (inner validation for early stopping; G-Blend's
held-out slice).

Patients are grouped into strata by label (binary: any positive sample; multi-class: the patient's most
frequent class; multi-label: one stratum), shuffled with a seeded generator, and round(fraction · n)
patients of each stratum (at least one when the stratum has two or more) go to the split-off part, so
that tiny cohorts still get both classes in their validation set. All samples of a patient stay together.
"""

from __future__ import annotations

import numpy as np


def patient_strata(patients: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, int]:
    """Stratum per patient (see module docstring)."""
    strata: dict[str, int] = {}
    if kind == "multilabel":
        return dict.fromkeys((str(p) for p in patients), 0)
    by_patient: dict[str, list[int]] = {}
    for p, y in zip(patients, labels, strict=True):
        by_patient.setdefault(str(p), []).append(int(y))
    for p, ys in by_patient.items():
        if kind == "binary":
            strata[p] = int(max(ys))
        else:
            values, counts = np.unique(ys, return_counts=True)
            strata[p] = int(values[np.argmax(counts)])
    return strata


def split_patients(
    idx: np.ndarray, patients: np.ndarray, labels: np.ndarray, kind: str, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices ``idx`` into (kept, split_off) by patient; ``labels`` are per row of ``idx``
    (binary: 0/1; multiclass: class index; multilabel: ignored)."""
    idx = np.asarray(idx)
    if fraction <= 0 or idx.size == 0:
        return idx, idx[:0]
    pats = np.asarray(patients)[idx].astype(str)
    strata = patient_strata(pats, np.asarray(labels), kind)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for stratum in sorted(set(strata.values())):
        members = np.array(sorted(p for p, s in strata.items() if s == stratum), dtype=object)
        rng.shuffle(members)
        n = len(members)
        n_off = max(1, round(fraction * n)) if n >= 2 else 0
        chosen.update(members[:n_off])
    off = np.array([p in chosen for p in pats], dtype=bool)
    if off.all():  # never leave nothing to train on
        off[:] = False
    return idx[~off], idx[off]
