"""Trainer settings (:class:`TrainConfig`, the single source of their defaults) and config overrides.

Overrides come as ``key=value`` strings or a YAML file with ``train:`` and ``method:`` sections::

    train.lr=3e-4  train.missing_rate=0.5  method.tla=false  method.lambda3=1.0  seed=1

A bare key is looked up in the trainer settings, then in the method's config; unknown keys are errors
that name the key and the known ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from omnifuse.formats.cohort import MODALITIES
from omnifuse.methods.base import coerce

COHORT_MODES = ("paired", "all")
EARLY_STOPPING = ("auroc", "loss")
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16", "auto")
OTHERS = "others"  # train.normalize key for every modality without its own entry


@dataclass
class TrainConfig:
    seed: int = 0  # seeds initialisation, batch order, inner split and training-time drops
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay
    batch_size: int = 64  # training batch size
    # batch size for validation, TLA mining and prediction; on a CPU small batches that stay in cache are
    # fastest (the demo's OmniFuse job: 512 -> 64 rows, 6 % less time), on a GPU raise it
    eval_batch_size: int = 64
    max_epochs: int = 50  # upper bound on training epochs
    patience: int = 5  # early stopping: epochs without a better inner-validation score
    val_fraction: float = 0.1  # inner validation: this fraction of the training fold's patients
    early_stopping: str = "auroc"  # inner-validation criterion: "auroc" or "loss"
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: off)
    cohort_mode: str = "paired"  # "paired": samples with every modality of the task; "all": any
    missing_rate: float = 0.0  # simulated missingness: P(a sample loses a modality), train and test
    missing_modality: str = "random"  # the modality removed at missing_rate, or "random" (one per sample)
    missing_seed: int = 0  # seed of the simulated missingness (independent of `seed`)
    # per-fold input normalisation, modality=normalizer ("others": every modality without its own
    # entry); [ehr=ehr_zscore] leaves the image and token caches as extracted
    normalize: tuple[str, ...] = ("ehr=ehr_zscore", "others=zscore")
    threads: int = 1  # torch CPU threads per process (parallelise over folds / jobs instead)
    device: str = "cpu"  # "cpu", "cuda" or "auto" (CUDA when available)
    # training steps in "fp32", under "bf16" autocast, or "auto": bf16 where the CPU (AMX, AVX512-BF16)
    # or GPU has native bf16 kernels, else fp32; evaluation always runs in fp32
    precision: str = "auto"
    deterministic: bool = True  # torch deterministic algorithms on CUDA (CPU kernels used here are)
    progress: bool = False  # progress bars

    def validate(self) -> None:
        if self.cohort_mode not in COHORT_MODES:
            raise ValueError(f"train.cohort_mode must be one of {COHORT_MODES}, got {self.cohort_mode!r}")
        if self.early_stopping not in EARLY_STOPPING:
            raise ValueError(
                f"train.early_stopping must be one of {EARLY_STOPPING}, got {self.early_stopping!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise ValueError(f"train.device must be one of {DEVICES}, got {self.device!r}")
        if not 0.0 <= self.missing_rate <= 0.9:
            raise ValueError(f"train.missing_rate must be in [0, 0.9], got {self.missing_rate}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"train.val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("batch_size", "eval_batch_size", "max_epochs", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"train.patience must be >= 1, got {self.patience}")
        for item in self.normalize:
            key = item.split("=", 1)[0]
            if "=" not in item or key not in (*MODALITIES, OTHERS):
                raise ValueError(
                    f"train.normalize entries are <modality>=<normalizer> with a modality of {MODALITIES} "
                    f"or {OTHERS!r}, got {item!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> TrainConfig:
        raw = dict(raw or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"unknown train key(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**{k: coerce(v, known[k].default, f"train.{k}") for k, v in raw.items()})
        cfg.validate()
        return cfg

    def normalizer_for(self, modality: str) -> str:
        """The normaliser of ``modality``: its own ``normalize`` entry, else the ``others`` entry, else
        ``none``."""
        named = dict(item.split("=", 1) for item in self.normalize)
        return named.get(modality, named.get(OTHERS, "none"))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def parse_value(text: str) -> Any:
    """A command-line value through YAML (``1e-3`` → float, ``false`` → bool, ``[a, b]`` → list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None else value


def split_overrides(
    items: Sequence[str] | Mapping[str, Any], train_keys: Sequence[str], method_keys: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``["train.lr=1e-3", "tla=false"]`` (or a mapping) → (train overrides, method overrides)."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        for item in items:
            if "=" not in item:
                raise ValueError(f"config override {item!r} is not key=value")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), parse_value(value.strip())))
    train: dict[str, Any] = {}
    method: dict[str, Any] = {}
    for key, value in pairs:
        section, _, name = key.rpartition(".")
        if section == "train":
            train[name] = value
        elif section == "method":
            method[name] = value
        elif section:
            raise ValueError(f"config override {key!r}: the section must be 'train' or 'method'")
        elif name in train_keys:
            train[name] = value
        elif name in method_keys:
            method[name] = value
        else:
            raise ValueError(
                f"unknown config key {key!r}; trainer keys: {sorted(train_keys)}; "
                f"method keys: {sorted(method_keys)}"
            )
    return train, method


def load_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A YAML file with optional ``train:`` and ``method:`` mappings."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or set(raw) - {"train", "method"}:
        raise ValueError(
            f"{path}: expected a mapping with 'train' and/or 'method' sections, got keys {sorted(raw)}"
        )
    return dict(raw.get("train") or {}), dict(raw.get("method") or {})
