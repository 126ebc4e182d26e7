"""The stage-2 dataset: a cohort table joined with its modality caches, held in memory as tensors.

:func:`load_run_data` reads the cohort (``omnifuse.formats.cohort.read_cohort``) and one cache per modality
(``omnifuse.formats.cache.read_cache``, aligned to the cohort's sample ids) and applies the run's
sample and modality semantics (docs/design.md "Evaluation protocol"):

* availability of modality m for a sample = cohort ``has_<m>`` AND cache ``present``;
* ``cohort_mode: paired`` keeps the samples that have every modality of the task (every cohort
  modality's ``has_<m>`` and every given cache's ``present``); ``all`` keeps every sample that has at
  least one modality of the combination;
* a combination C (e.g. ``cxr+rep``) makes only C's modalities inputs; for imputation methods the
  task's other modalities are carried as imputation targets (``present``) but are never ``observed``;
  other methods do not load them;
* simulated missingness (``missing_rate``) removes inputs, never a sample's last one, in every fold
  alike; removed modalities stay imputation targets.

Batches are built by index (no per-sample Python work): :meth:`RunData.batch`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from omnifuse.formats.cache import FeatureCache, cohort_availability, load_for_cohort
from omnifuse.formats.cohort import CohortMeta, CohortRef, read_cohort
from omnifuse.formats.run import combo_name
from omnifuse.methods.base import Batch
from omnifuse.nn.encoders import last_valid_index
from omnifuse.train.missingness import simulate_missing
from omnifuse.train.normalize import FittedNormalizer

log = logging.getLogger("omnifuse.train")


def parse_combo(combo: str | Sequence[str] | None, universe: Sequence[str]) -> tuple[str, ...]:
    """``"ehr+cxr"`` or ``["ehr", "cxr"]`` (None / "all": every modality) → modalities in cohort order."""
    if combo is None or combo == "all" or combo == "":
        return tuple(universe)
    names = [s.strip() for s in combo.split("+")] if isinstance(combo, str) else [str(s) for s in combo]
    unknown = [m for m in names if m not in universe]
    if unknown:
        raise ValueError(
            f"combination {'+'.join(names)}: no cache was given for {unknown} "
            f"(available: {'+'.join(universe)})"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"combination {'+'.join(names)} repeats a modality")
    return tuple(m for m in universe if m in names)


def label_tensor(frame: pl.DataFrame, meta: CohortMeta) -> torch.Tensor:
    if meta.kind == "multiclass":
        return torch.as_tensor(frame[meta.label_columns[0]].to_numpy().astype(np.int64))
    return torch.as_tensor(frame.select(meta.label_columns).to_numpy().astype(np.float32))


@dataclass
class RunData:
    """Everything one run trains and evaluates on, aligned row by row."""

    meta: CohortMeta
    ids: np.ndarray  # (N,) sample ids
    patients: np.ndarray  # (N,) patient ids
    folds: np.ndarray  # (N,) fold of each sample
    y: torch.Tensor  # (N, C) float or (N,) long
    modalities: tuple[str, ...]  # modalities the model holds (inputs + imputation targets)
    inputs: tuple[str, ...]  # the run's combination C
    x: dict[str, torch.Tensor]  # (N, L, D) as stored (float16 / float32)
    mask: dict[str, torch.Tensor]  # (N, L) bool; rows without a valid step are all True (zero input)
    present: torch.Tensor  # (N, M) bool: true data exist
    observed: torch.Tensor  # (N, M) bool: inputs (present ∩ C ∩ not dropped)
    dropped: torch.Tensor  # (N, M) bool: removed by simulated missingness
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _lengths: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        return {m: (int(self.x[m].shape[1]), int(self.x[m].shape[2])) for m in self.modalities}

    def strat_labels(self, idx: np.ndarray) -> np.ndarray:
        """Labels usable for stratified splits: 0/1 (binary), class index (multiclass), zeros otherwise."""
        y = self.y[torch.as_tensor(idx, dtype=torch.long)]
        if self.meta.kind == "multiclass":
            return y.numpy()
        if self.meta.kind == "binary":
            return y[:, 0].numpy().astype(np.int64)
        return np.zeros(len(idx), dtype=np.int64)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One sample as a dict (for inspection; training uses :meth:`batch`)."""
        return {
            "sample_id": str(self.ids[i]),
            "y": self.y[i],
            **{f"x_{m}": self.x[m][i].float() for m in self.modalities},
            **{f"mask_{m}": self.mask[m][i] for m in self.modalities},
            "observed": self.observed[i],
            "present": self.present[i],
        }

    def lengths(self, modality: str) -> torch.Tensor:
        """(N,) steps a row needs: up to its last valid step; 1 for a row without data (a zero input,
        which every length-invariant encoder maps to the same embedding at any length)."""
        if modality not in self._lengths:
            j = self.modalities.index(modality)
            length = last_valid_index(self.mask[modality]) + 1
            self._lengths[modality] = torch.where(self.present[:, j], length, torch.ones_like(length))
        return self._lengths[modality]

    def batch(
        self,
        idx: torch.Tensor,
        normalizers: Mapping[str, FittedNormalizer] | None = None,
        *,
        targets: bool = False,
        labels: bool = True,
        device: torch.device | str = "cpu",
        trim: Collection[str] = (),
    ) -> Batch:
        """Rows ``idx`` as a :class:`Batch` of float32 inputs, each modality passed through its fold
        normaliser (``normalizers``). Without ``targets`` the data of non-observed modalities are zeroed
        and ``present`` is None, so that nothing but the inputs can reach a model at evaluation time.

        ``trim``: modalities whose encoder ignores the steps after a row's last valid one and maps a zero
        input to the same embedding at any length (attention pooling, mean pooling, the transformer
        layer; not the LSTM). Their batch keeps only the steps some row of the batch needs
        (:meth:`lengths`): report tokens padded to the cache's length cost nothing."""
        normalizers = normalizers or {}
        observed = self.observed[idx]
        xs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            source, valid = self.x[m], self.mask[m]
            if m in trim:
                steps = int(self.lengths(m)[idx].max()) if len(idx) else 1
                source, valid = source[:, :steps], valid[:, :steps]
            x = source.index_select(0, idx)
            x = (normalizers[m].apply(x) if m in normalizers else x).float()
            if not targets and not bool(observed[:, j].all()):
                x[~observed[:, j]] = 0  # x is this batch's own copy
            mask = valid.index_select(0, idx)
            if m in trim:
                mask[~mask.any(1)] = True  # a row without data: an all-valid zero input, as in the cache
            xs[m] = x.to(device, non_blocking=True)
            masks[m] = mask.to(device)
        return Batch(
            x=xs,
            mask=masks,
            observed=observed.to(device),
            present=self.present[idx].to(device) if targets else None,
            y=self.y[idx].to(device) if labels else None,
            index=idx,
        )


PROVENANCE_ATTRS = (
    "encoder", "weights", "preprocessing", "device", "precision", "host_cpu", "host_gpu", "cpu_capability",
    "torch_threads", "torch_version", "inputs_sha256", "omnifuse_version",
)  # fmt: skip


def input_provenance(
    ref: CohortRef,
    caches: Mapping[str, str | Path],
    attrs: Mapping[str, Mapping[str, Any]],
    meta: CohortMeta,
) -> dict[str, Any]:
    """What a run read (for its summary): the cohort's identity and data origin (``synthetic``, as the
    cohort builder found it) and, per loaded cache, its path and the attributes that change the numbers
    (encoder, weights, preprocessing, device, precision, machine)."""
    return {
        "cohort": {"path": ref.path, "sha256": ref.sha256, "dataset": ref.dataset, "task": ref.task,
                   "window": ref.window, "synthetic": meta.extra.get("synthetic"),
                   "sources": meta.extra.get("sources")},
        "caches": {
            m: {"path": str(caches[m]), **{k: str(a[k]) for k in PROVENANCE_ATTRS if k in a}}
            for m, a in attrs.items()
        },
    }  # fmt: skip


def load_run_data(
    cohort: str | Path,
    caches: Mapping[str, str | Path],
    combo: str | Sequence[str] | None = None,
    *,
    with_targets: bool = False,
    cohort_mode: str = "paired",
    missing_rate: float = 0.0,
    missing_modality: str = "random",
    missing_seed: int = 0,
) -> RunData:
    """Join the cohort with its caches and apply the run's semantics (module docstring)."""
    frame, meta = read_cohort(cohort)
    ref = CohortRef.of(cohort, frame, meta)  # every cache must have been built for this cohort
    unknown = sorted(set(caches) - set(meta.modalities))
    if unknown:
        raise ValueError(
            f"{cohort}: caches given for {unknown}, which are not modalities of this cohort {meta.modalities}"
        )
    universe = tuple(m for m in meta.modalities if m in caches)
    if not universe:
        raise ValueError(f"{cohort}: no modality cache given")
    inputs = parse_combo(combo, universe)
    modalities = universe if with_targets else inputs
    ids = frame["sample_id"].to_numpy().astype(str).astype(object)
    n = len(ids)

    # availability of every given cache (data loaded only for the model's modalities)
    avail: dict[str, np.ndarray] = {}
    loaded: dict[str, FeatureCache] = {}
    for m in universe:
        has = frame[f"has_{m}"].to_numpy().astype(bool)
        if m in modalities:
            loaded[m] = load_for_cohort(caches[m], m, ids, has, cohort=ref)
            avail[m] = loaded[m].present
            log.info(
                "read %s cache %s: %d rows, (L, D) = (%d, %d)",
                m, caches[m], len(loaded[m]), loaded[m].seq_len, loaded[m].dim,
            )  # fmt: skip
        else:
            avail[m] = cohort_availability(caches[m], m, ids, has, cohort=ref)
            log.info("read %s availability from %s (imputation target not used by this run)", m, caches[m])

    keep = np.ones(n, dtype=bool)
    if cohort_mode == "paired":
        for m in meta.modalities:
            keep &= avail[m] if m in avail else frame[f"has_{m}"].to_numpy().astype(bool)
    elif cohort_mode == "all":
        keep &= np.any([avail[m] for m in inputs], axis=0)
    else:
        raise ValueError(f"cohort_mode must be 'paired' or 'all', got {cohort_mode!r}")
    if not keep.any():
        raise ValueError(f"{cohort}: no sample left in cohort_mode={cohort_mode} for {combo_name(inputs)}")
    log.info(
        "cohort %s (%s, %s): %d of %d samples kept (cohort_mode=%s), inputs %s, model modalities %s",
        cohort, meta.dataset, meta.task, int(keep.sum()), n, cohort_mode,
        combo_name(inputs), combo_name(modalities),
    )  # fmt: skip
    rows = np.flatnonzero(keep)
    frame = frame[rows]
    ids = ids[rows]
    present = np.stack([avail[m][rows] for m in modalities], axis=1)
    is_input = np.array([m in inputs for m in modalities])
    input_cols = [j for j, m in enumerate(modalities) if m in inputs]
    dropped = np.zeros_like(present)
    dropped[:, input_cols] = simulate_missing(
        list(ids),
        present[:, input_cols],
        [modalities[j] for j in input_cols],
        missing_rate,
        missing_modality,
        missing_seed,
    )
    observed = present & is_input[None, :] & ~dropped
    x, mask, attrs = {}, {}, {}
    for m in modalities:
        cache = loaded[m]
        data = torch.from_numpy(np.ascontiguousarray(cache.data[rows]))
        valid = torch.from_numpy(np.ascontiguousarray(cache.mask[rows]))
        empty = ~valid.any(1)
        valid[empty] = True  # absent rows: an all-valid zero input (never a fully masked row)
        data[torch.from_numpy(~avail[m][rows])] = 0
        x[m], mask[m], attrs[m] = data, valid, dict(cache.attrs)
    info = {
        "n_cohort": n,
        "n_kept": len(rows),
        "dropped_per_modality": {m: int(dropped[:, j].sum()) for j, m in enumerate(modalities)},
        "observed_per_modality": {m: int(observed[:, j].sum()) for j, m in enumerate(modalities)},
        "provenance": input_provenance(ref, caches, attrs, meta),
    }
    return RunData(
        meta=meta,
        ids=ids,
        patients=frame["patient_id"].to_numpy().astype(str).astype(object),
        folds=frame["fold"].to_numpy().astype(np.int64),
        y=label_tensor(frame, meta),
        modalities=modalities,
        inputs=inputs,
        x=x,
        mask=mask,
        present=torch.from_numpy(present),
        observed=torch.from_numpy(observed),
        dropped=torch.from_numpy(dropped),
        attrs=attrs,
        info=info,
    )
