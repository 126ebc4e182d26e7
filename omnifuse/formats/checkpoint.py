"""The checkpoint: ``fold{k}/checkpoint.pt`` of a run, a model and everything that rebuilds it.

A plain dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors,
numbers, strings, lists and dicts only; nothing is unpickled as code). Its sha256 is recorded beside it
(``checkpoint.pt.sha256``, ``sha256sum`` format) and in the run's ``summary.json``; loading checks both,
so a changed, truncated or zeroed file is an error naming it, never a model with silently wrong weights.
The dict holds:

* ``format``: ``omnifuse-checkpoint-1``;
* ``method``, ``method_config`` (the method's config dataclass as a dict), ``spec`` (modalities, inputs,
  cache shapes, task: :class:`omnifuse.methods.base.ModelSpec`), ``state_dict``;
* ``train_config``, ``normalizers`` (per modality: the normaliser's name and its fold statistics, which
  predictions reuse), ``fold``, ``best_epoch``, ``cohort_meta`` (the cohort's task description, JSON).

:func:`model_from_checkpoint` rebuilds the model from these alone (nanoGPT style).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from omnifuse.formats.cohort import CohortMeta
from omnifuse.methods.base import FusionMethod, MethodConfig, ModelSpec, config_from_dict
from omnifuse.methods.registry import build_method, method_class

FORMAT = "omnifuse-checkpoint-1"
SHA_SUFFIX = ".sha256"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read (the message names the file and what is wrong)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha_path(path: str | Path) -> Path:
    """``fold0/checkpoint.pt`` → ``fold0/checkpoint.pt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + SHA_SUFFIX)


def sha_line(digest: str, path: str | Path) -> str:
    """The sidecar's content (``sha256sum -c`` reads it)."""
    return f"{digest}  {Path(path).name}\n"


def recorded_sha256(path: str | Path) -> str:
    """The sha256 recorded beside ``path`` (error naming the sidecar when it is missing or malformed)."""
    side = sha_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"{path}: no recorded sha256 ({side.name} is missing); a checkpoint is only loaded with the "
            "hash its run wrote beside it (copy both files, or retrain)"
        )
    match = re.match(r"^([0-9a-f]{64})\b", side.read_text(encoding="utf-8", errors="replace").strip())
    if match is None:
        raise CheckpointError(f"{side}: not a sha256 line ('<64 hex digits>  {Path(path).name}')")
    return match.group(1)


def _summary_sha256(path: Path) -> tuple[Path, str] | None:
    """The sha256 the run's summary.json lists for this fold's checkpoint, if it lists one."""
    fold = re.fullmatch(r"fold(\d+)", path.parent.name)
    summary = path.parent.parent / "summary.json"
    if fold is None or not summary.is_file():
        return None
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
        listed = dict(zip(data.get("folds") or [], data.get("checkpoint_sha256") or [], strict=False))
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{summary}: corrupt run summary ({exc})") from exc
    digest = listed.get(int(fold.group(1)))
    return (summary, digest) if digest else None


def read_verified(path: str | Path) -> bytes:
    """The bytes of a checkpoint whose sha256 matches the one recorded beside it and in the run's
    summary.json (when it lists one); :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    actual = sha256_bytes(data)
    expected = recorded_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 {actual} differs from the recorded {expected} ({sha_path(path).name}): the "
            f"file was changed, truncated or damaged after training ({len(data)} bytes)"
        )
    listed = _summary_sha256(path)
    if listed is not None and listed[1] != actual:
        raise CheckpointError(
            f"{path}: sha256 {actual} differs from {listed[1]} listed in {listed[0]} for this fold"
        )
    return data


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


def from_bytes(data: bytes, where: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of checkpoint bytes; any failure is a :class:`CheckpointError`
    naming ``where`` (torch's own text for a damaged zip speaks of a "legacy .tar" format)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(
            f"{where}: not a torch checkpoint (no zip archive: the file is truncated, zeroed or another "
            f"format; {len(data)} bytes)"
        )
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{where}: unreadable torch checkpoint ({first[:200]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not an omnifuse checkpoint (expected format {FORMAT!r})")
    return ckpt


def load_checkpoint(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) after checking its recorded sha256
    (``verify``; see :func:`read_verified`) and its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = read_verified(path) if verify else path.read_bytes()
    return from_bytes(data, path)


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> FusionMethod:
    """Rebuild the model from the checkpoint's method, config and spec; load its weights (eval mode)."""
    spec = ModelSpec.from_dict(ckpt["spec"])
    cfg = config_from_dict(method_class(ckpt["method"]).Config, ckpt["method_config"])
    model = build_method(ckpt["method"], spec, cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
