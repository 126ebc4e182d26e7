"""The checkpoint: ``fold{k}/checkpoint.pt`` of a run, a model and everything that rebuilds it.

A plain dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors,
numbers, strings, lists and dicts only; nothing is unpickled as code):

* ``format``: ``omnifuse-checkpoint-1``;
* ``method``, ``method_config`` (the method's config dataclass as a dict), ``spec`` (modalities, inputs,
  cache shapes, task: :class:`omnifuse.methods.base.ModelSpec`), ``state_dict``;
* ``train_config``, ``normalizers`` (per modality: the normaliser's name and its fold statistics, which
  predictions reuse), ``fold``, ``best_epoch``, ``cohort_meta`` (the cohort's task description, JSON).

:func:`model_from_checkpoint` rebuilds the model from these alone (nanoGPT style).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from omnifuse.formats.cohort import CohortMeta
from omnifuse.methods.base import FusionMethod, MethodConfig, ModelSpec, config_from_dict
from omnifuse.methods.registry import build_method, method_class

FORMAT = "omnifuse-checkpoint-1"


def make_checkpoint(
    model: FusionMethod,
    method: str,
    method_cfg: MethodConfig,
    train_config: Mapping[str, Any],
    normalizers: Mapping[str, Any],
    meta: CohortMeta,
    fold: int,
    best_epoch: int,
) -> dict[str, Any]:
    """The checkpoint dict of a trained model (tensors on the CPU)."""
    return {
        "format": FORMAT,
        "method": method,
        "method_config": method_cfg.to_dict(),
        "spec": model.spec.to_dict(),
        "train_config": dict(train_config),
        "normalizers": dict(normalizers),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "fold": fold,
        "best_epoch": best_epoch,
        "cohort_meta": meta.to_json(),
    }


def to_bytes(checkpoint: Mapping[str, Any]) -> bytes:
    """The file content of ``checkpoint`` (``torch.save``), for the run directory's writer."""
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    return buffer.getvalue()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an omnifuse checkpoint (expected format {FORMAT!r})")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> FusionMethod:
    """Rebuild the model from the checkpoint's method, config and spec; load its weights (eval mode)."""
    spec = ModelSpec.from_dict(ckpt["spec"])
    cfg = config_from_dict(method_class(ckpt["method"]).Config, ckpt["method_config"])
    model = build_method(ckpt["method"], spec, cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
