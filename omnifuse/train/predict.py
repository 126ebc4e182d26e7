"""Prediction with a trained checkpoint: per-sample probabilities, each modality head's probability,
and which modalities were observed or imputed (the per-modality view a clinician-facing user inspects).

Inputs are the checkpoint (``fold{k}/checkpoint.pt``) and the caches of the model's input modalities
(any subset; a missing cache means that modality is missing for every sample), optionally a cohort
table: then its samples, availability (``has_<m>`` AND cache ``present``) and labels are used; without a
cohort the samples are the union of the caches' ids and availability is the caches' ``present``. Every
pattern of missing modalities is handled (missing inputs are the encoder on a zero input, imputed by
methods with imputation). Inputs are normalised with the fold statistics stored in the checkpoint.

Output columns: ``sample_id``, ``y_true*`` (when the cohort has labels), ``y_score*`` (the layout of
``predictions.parquet``), ``head_<m>_y_score*`` for methods with per-modality heads (NaN where the head
has nothing to read: a missing modality of a method without imputation), ``observed_<m>`` and
``imputed_<m>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from omnifuse.formats.cache import load_for_cohort, read_presence
from omnifuse.formats.checkpoint import load_checkpoint, model_from_checkpoint
from omnifuse.formats.cohort import CohortMeta, CohortRef, read_cohort
from omnifuse.formats.run import predictions_metadata, predictions_table, write_parquet
from omnifuse.methods.base import ModelSpec
from omnifuse.train.data import RunData, label_tensor
from omnifuse.train.normalize import FittedNormalizer

log = logging.getLogger("omnifuse.train.predict")


def prediction_data(
    ckpt: Mapping[str, Any], caches: Mapping[str, str | Path], cohort: str | Path | None = None
) -> tuple[RunData, bool]:
    """The samples to predict, as :class:`RunData` of the checkpoint's model (rules in the module
    docstring), and whether they carry labels (a cohort was given)."""
    spec = ModelSpec.from_dict(ckpt["spec"])
    meta = CohortMeta.from_json(ckpt["cohort_meta"])
    ignored = sorted(set(caches) - set(spec.inputs))
    if ignored:
        log.info(
            "caches for %s are not inputs of this model (inputs: %s); ignored", ignored, "+".join(spec.inputs)
        )
    given = [m for m in spec.inputs if m in caches]
    for m in spec.inputs:
        if m not in caches:
            log.warning("no cache for input modality %s: it is missing for every sample", m)
    has_labels = cohort is not None
    ref = None
    if cohort is not None:
        frame, cmeta = read_cohort(cohort)
        ref = CohortRef.of(cohort, frame, cmeta)  # the caches must have been built for this cohort
        if cmeta.kind != meta.kind or cmeta.n_outputs != meta.n_outputs:
            raise ValueError(
                f"{cohort}: a {cmeta.kind} task with {cmeta.n_outputs} outputs, the model predicts "
                f"{meta.kind} with {meta.n_outputs}"
            )
        ids = frame["sample_id"].to_numpy().astype(str).astype(object)
        has = {
            m: frame[f"has_{m}"].to_numpy().astype(bool) if f"has_{m}" in frame.columns else None
            for m in spec.modalities
        }
        y = label_tensor(frame, cmeta)
        patients = frame["patient_id"].to_numpy().astype(str).astype(object)
    else:
        seen: dict[str, None] = {}
        for m in given:
            seen.update(dict.fromkeys(str(s) for s in read_presence(caches[m], m)[0]))
        ids = np.array(list(seen), dtype=object)
        if len(ids) == 0:
            raise ValueError("no samples: give a cohort or at least one cache of an input modality")
        has = dict.fromkeys(spec.modalities)
        y = (
            torch.zeros(len(ids), dtype=torch.long)
            if meta.kind == "multiclass"
            else torch.zeros(len(ids), meta.n_outputs)
        )
        patients = ids
    n = len(ids)
    x, mask, attrs = {}, {}, {}
    present = np.zeros((n, spec.n_modalities), dtype=bool)
    for j, m in enumerate(spec.modalities):
        length, dim = spec.shapes[m]
        if m in given:
            cache = load_for_cohort(caches[m], m, ids, has[m], strict=cohort is not None, cohort=ref)
            if (cache.seq_len, cache.dim) != (length, dim):
                raise ValueError(
                    f"{caches[m]}: cache shape (L, D) = ({cache.seq_len}, {cache.dim}); "
                    f"the model was trained on ({length}, {dim})"
                )
            present[:, j] = cache.present
            data = torch.from_numpy(np.ascontiguousarray(cache.data))
            valid = torch.from_numpy(np.ascontiguousarray(cache.mask))
            attrs[m] = dict(cache.attrs)
        else:
            data = torch.zeros(n, length, dim)
            valid = torch.ones(n, length, dtype=torch.bool)
        valid[~valid.any(1)] = True
        data[torch.from_numpy(~present[:, j])] = 0
        x[m], mask[m] = data, valid
    is_input = np.array([m in spec.inputs for m in spec.modalities])
    observed = present & is_input[None, :]
    no_input = ~observed.any(1)
    if no_input.any():
        log.warning(
            "%d sample(s) have none of the input modalities; their prediction uses no data",
            int(no_input.sum()),
        )
    data = RunData(
        meta=meta, ids=ids, patients=patients, folds=np.zeros(n, dtype=np.int64), y=y,
        modalities=spec.modalities, inputs=spec.inputs, x=x, mask=mask,
        present=torch.from_numpy(observed), observed=torch.from_numpy(observed),
        dropped=torch.zeros(n, spec.n_modalities, dtype=torch.bool), attrs=attrs,
    )  # fmt: skip
    return data, has_labels


def checkpoint_normalizers(data: RunData, ckpt: Mapping[str, Any]) -> dict[str, FittedNormalizer]:
    """The fold normalisers stored in the checkpoint, for the modalities of ``data``."""
    return {
        m: FittedNormalizer.from_dict(entry)
        for m, entry in ckpt.get("normalizers", {}).items()
        if m in data.modalities
    }


@torch.no_grad()
def predict(
    checkpoint: str | Path | Mapping[str, Any],
    caches: Mapping[str, str | Path],
    cohort: str | Path | None = None,
    out: str | Path | None = None,
    batch_size: int = 512,
    device: str = "cpu",
) -> pl.DataFrame:
    """Predict every sample (module docstring); write the table to ``out`` (parquet) if given."""
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, Mapping) else checkpoint
    model = model_from_checkpoint(ckpt).to(device)
    data, has_labels = prediction_data(ckpt, caches, cohort)
    normalizers = checkpoint_normalizers(data, ckpt)
    trim = model.encoders.length_invariant()
    probs, heads, head_mask, imputed, observed = [], [], [], [], []
    for part in torch.arange(len(data)).split(batch_size):
        batch = data.batch(part, normalizers, targets=False, labels=False, device=device, trim=trim)
        out_b = model(batch)
        probs.append(model.task.probs(out_b.logits).float().cpu())
        observed.append(batch.observed.cpu())
        if out_b.modality_logits is not None:
            m = out_b.modality_logits.shape[1]
            heads.append(
                torch.stack([model.task.probs(out_b.modality_logits[:, j]) for j in range(m)], 1)
                .float()
                .cpu()
            )
            head_mask.append(out_b.modality_mask.cpu())
        imputed.append(
            out_b.imputed.cpu() if out_b.imputed is not None else torch.zeros_like(batch.observed.cpu())
        )
    table = predictions_table(
        data.meta,
        data.ids,
        torch.cat(probs).numpy(),
        data.modalities,
        y=data.y.numpy() if has_labels else None,
        observed=torch.cat(observed).numpy(),
        imputed=torch.cat(imputed).numpy(),
        head_probs=torch.cat(heads).numpy() if heads else None,
        head_mask=torch.cat(head_mask).numpy() if head_mask else None,
    )
    if out is not None:
        write_parquet(Path(out), table, predictions_metadata(data.meta, data.modalities))
        log.info("wrote predictions for %d samples to %s", len(table), out)
    return table
