"""Simulated missingness for the missing-rate sweeps (docs/design.md "Evaluation protocol", Figs. 4-6).

At rate r each sample independently loses one of its input modalities with probability r: a named one
(if the sample has it), or one chosen uniformly among the modalities it has (``"random"``). A sample never
loses its last modality. Applied identically to training and test folds; the dropped modality's
embedding remains an imputation target in training only (the trainer keeps it as ``present``).

Randomness is keyed on (seed, sample id), not on row order: the same sample gets the same decision in
every fold, cohort subset and run, and the samples affected at a rate r are a subset of those affected
at any larger rate (the curves are nested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def keyed_uniform(seed: int, ids: Sequence[str], purpose: str) -> np.ndarray:
    """(N,) uniforms in [0, 1) from blake2b(seed, id, purpose): order-independent and reproducible."""
    out = np.empty(len(ids), dtype=np.float64)
    prefix = f"{int(seed)}\0{purpose}\0".encode()
    for i, sid in enumerate(ids):
        digest = hashlib.blake2b(prefix + str(sid).encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0**64
    return out


def simulate_missing(
    ids: Sequence[str],
    available: np.ndarray,
    modalities: Sequence[str],
    rate: float,
    modality: str = "random",
    seed: int = 0,
) -> np.ndarray:
    """(N, K) bool: which of the K ``modalities`` each sample loses (subset of ``available``)."""
    available = np.asarray(available, dtype=bool)
    n, k = available.shape
    if len(ids) != n or len(modalities) != k:
        raise ValueError("simulate_missing: ids, availability and modality names disagree in size")
    if not 0.0 <= rate <= 0.9:
        raise ValueError(f"missing rate must be in [0, 0.9], got {rate}")
    dropped = np.zeros((n, k), dtype=bool)
    if rate == 0.0 or n == 0:
        return dropped
    affected = (keyed_uniform(seed, ids, "drop") < rate) & (available.sum(1) >= 2)
    if modality != "random":
        if modality not in modalities:
            raise ValueError(
                f"missing_modality {modality!r} is not an input modality of this run ({'+'.join(modalities)})"
            )
        j = list(modalities).index(modality)
        dropped[:, j] = affected & available[:, j]
        return dropped
    which = keyed_uniform(seed, ids, "which")
    n_avail = available.sum(1)
    pick = np.minimum((which * n_avail).astype(np.int64), np.maximum(n_avail - 1, 0))
    rank = np.cumsum(available, axis=1) - 1  # position of each available modality among the sample's
    dropped = affected[:, None] & available & (rank == pick[:, None])
    return dropped
