"""The interface every fusion method implements, so that one trainer runs them all.

A method is an ``nn.Module`` subclass of :class:`FusionMethod` with a config dataclass (``Config``,
a subclass of :class:`MethodConfig`, which holds the shared encoder settings). The trainer

1. builds it from a :class:`ModelSpec` (modalities, input combination, cache shapes, task) and a config;
2. calls ``forward(batch)`` on training batches and back-propagates ``output.loss``;
3. calls the hooks: :meth:`~FusionMethod.on_fit_start`, :meth:`~FusionMethod.on_epoch_start`,
   :meth:`~FusionMethod.after_backward` (after ``loss.backward()`` and before ``optimizer.step()``:
   gradient modulation such as OGM-GE) and :meth:`~FusionMethod.on_epoch_end` (epoch-level work such
   as TLA mining, G-Blend weight re-estimation or prototype refreshes; it returns values for the
   history);
4. calls ``forward`` in eval mode on batches without targets to predict.

A method that wants a held-out slice of the training fold (G-Blend) sets :attr:`holdout_fraction`; the
trainer carves it out patient-level and hands it over in the fit context, never training on it.

Batches (:class:`Batch`) carry every modality of the spec: ``observed`` says which ones are inputs for
each sample (natural availability ∩ the run's combination ∩ not dropped by simulated missingness);
``present`` (training batches only) says where a true embedding exists as an imputation target.
Methods must never use a non-observed modality's data as an input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from omnifuse.nn.encoders import ModalityEncoders
from omnifuse.nn.task import Task

MISSING_INPUTS = ("zero_input", "zero_embedding")


@dataclass(frozen=True)
class ModelSpec:
    """What a model is built for. ``modalities`` are all modalities the model holds (inputs plus, for
    imputation methods, the imputation targets); ``inputs`` is the run's combination C."""

    modalities: tuple[str, ...]
    inputs: tuple[str, ...]
    shapes: Mapping[str, tuple[int, int]]  # modality -> (L, D) of its cache
    kind: str
    n_outputs: int
    label_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("a model needs at least one input modality")
        extra = [m for m in self.inputs if m not in self.modalities]
        if extra:
            raise ValueError(f"input modalities {extra} are not among the model's {self.modalities}")
        missing = [m for m in self.modalities if m not in self.shapes]
        if missing:
            raise ValueError(f"no cache shape for modalities {missing}")
        Task(self.kind, self.n_outputs)  # validates the kind and width

    @property
    def task(self) -> Task:
        return Task(self.kind, self.n_outputs)

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "inputs": list(self.inputs),
            "shapes": {m: list(self.shapes[m]) for m in self.modalities},
            "kind": self.kind,
            "n_outputs": self.n_outputs,
            "label_names": list(self.label_names),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSpec:
        return cls(
            modalities=tuple(raw["modalities"]),
            inputs=tuple(raw["inputs"]),
            shapes={m: (int(s[0]), int(s[1])) for m, s in raw["shapes"].items()},
            kind=str(raw["kind"]),
            n_outputs=int(raw["n_outputs"]),
            label_names=tuple(raw.get("label_names", ())),
        )


@dataclass
class Batch:
    """A batch of samples; tensors are indexed like ``spec.modalities`` along the modality axis."""

    x: dict[str, torch.Tensor]  # modality -> (B, L, D) float32
    mask: dict[str, torch.Tensor]  # modality -> (B, L) bool, at least one True per row
    observed: torch.Tensor  # (B, M) bool: inputs
    present: torch.Tensor | None = None  # (B, M) bool: true data exist (imputation targets); training only
    y: torch.Tensor | None = None  # (B, C) float (binary / multilabel) or (B,) long (multiclass)
    index: torch.Tensor | None = None  # (B,) row positions in the run's data

    def __len__(self) -> int:
        return int(self.observed.shape[0])


@dataclass
class ModelOutput:
    """What every method returns. ``logits`` are the final prediction; ``losses`` holds every loss term
    (already weighted terms are not required: the history records the raw terms)."""

    logits: torch.Tensor  # (B, C)
    loss: torch.Tensor | None = None  # what the trainer back-propagates
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    modality_logits: torch.Tensor | None = None  # (B, M, C) per-modality heads, if the method has them
    modality_mask: torch.Tensor | None = None  # (B, M) which modality logits are meaningful
    imputed: torch.Tensor | None = None  # (B, M) bool: modalities that were imputed, not observed
    embeddings: torch.Tensor | None = None  # (B, M, d) the per-modality embeddings the heads saw
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Settings shared by every method: the modality encoders (docs/design.md "Method decisions")."""

    d: int = 256  # embedding size of every modality encoder
    ehr_hidden: int = 256  # EHR LSTM hidden size
    ehr_layers: int = 2  # EHR LSTM layers
    attn_hidden: int = 128  # hidden size of the attention-pooling scorer (tokens, slices)
    token_encoder: str = "attention"  # report tokens: "attention" pooling or one "transformer" layer
    dropout: float = 0.0  # dropout inside the encoders and MLP heads
    head_hidden: int = 0  # 0: linear heads; > 0: one hidden layer of this size
    missing_input: str = "zero_input"  # missing modality = encoder on a zero input, or "zero_embedding"

    def validate(self) -> None:
        if self.missing_input not in MISSING_INPUTS:
            raise ValueError(f"missing_input must be one of {MISSING_INPUTS}, got {self.missing_input!r}")
        if self.token_encoder not in ("attention", "transformer"):
            raise ValueError(
                f"token_encoder must be 'attention' or 'transformer', got {self.token_encoder!r}"
            )
        if self.d < 1:
            raise ValueError(f"d must be positive, got {self.d}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_from_dict(cls: type[MethodConfig], raw: Mapping[str, Any] | None) -> MethodConfig:
    """Build ``cls`` from a mapping, refusing unknown keys by name and coercing simple types."""
    raw = dict(raw or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in raw.items():
        default = known[name].default
        values[name] = coerce(value, default, f"{cls.__name__}.{name}")
    cfg = cls(**values)
    cfg.validate()
    return cfg


def coerce(value: Any, default: Any, where: str) -> Any:
    """Coerce ``value`` (possibly a string from the command line) to the type of ``default``."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        return tuple(value)
    try:
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a {type(default).__name__}, got {value!r}") from None
    return str(value) if isinstance(default, str) else value


@dataclass
class Embedded:
    true: torch.Tensor  # (B, M, d) encoder output on the batch data (meaningful where data exist)
    placeholder: torch.Tensor  # (M, d) the missing-modality value
    inputs: torch.Tensor  # (B, M, d) true where observed, placeholder elsewhere


class FusionMethod(nn.Module):
    """Base class: owns the shared modality encoders and the task; subclasses add the fusion."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, spec: ModelSpec, cfg: MethodConfig):
        super().__init__()
        cfg.validate()
        self.spec = spec
        self.cfg = cfg
        self.task = spec.task
        self.modalities = spec.modalities
        self.encoders = ModalityEncoders(
            {m: spec.shapes[m] for m in spec.modalities},
            d=cfg.d,
            ehr_hidden=cfg.ehr_hidden,
            ehr_layers=cfg.ehr_layers,
            attn_hidden=cfg.attn_hidden,
            token_encoder=cfg.token_encoder,
            dropout=cfg.dropout,
        )

    # ----- what the trainer asks before building the model -----
    @classmethod
    def uses_imputation_targets(cls, cfg: MethodConfig) -> bool:
        """Whether the task's modalities outside the run's combination serve as imputation targets in
        training (docs/design.md "Evaluation protocol"); methods without imputation ignore them entirely."""
        return False

    @property
    def holdout_fraction(self) -> float:
        """Fraction of the training fold (patient-level) the method needs held out (G-Blend: 0.08)."""
        return 0.0

    # ----- shared pieces -----
    def embed(self, batch: Batch) -> Embedded:
        """Encode every modality of the batch; non-observed slots get the missing-modality value (computed
        in the same pass, :meth:`~omnifuse.nn.encoders.ModalityEncoders.with_placeholders`)."""
        if self.cfg.missing_input == "zero_embedding":
            true = self.encoders(batch.x, batch.mask)
            placeholder = self.placeholder(true.device)
        else:
            true, placeholder = self.encoders.with_placeholders(batch.x, batch.mask)
        inputs = torch.where(batch.observed.unsqueeze(-1), true, placeholder.unsqueeze(0))
        return Embedded(true=true, placeholder=placeholder, inputs=inputs)

    def placeholder(self, device: torch.device | None = None) -> torch.Tensor:
        """(M, d) missing-modality embeddings: each encoder on a zero input (``missing_input``)."""
        if self.cfg.missing_input == "zero_embedding":
            return torch.zeros(len(self.modalities), self.cfg.d, device=device)
        return self.encoders.placeholders(device=device)

    def encoder_parameters(self, modality: str) -> list[nn.Parameter]:
        """Parameters of one modality's encoder (for gradient modulation, e.g. OGM-GE)."""
        return list(self.encoders.encoders[modality].parameters())

    def with_task_loss(self, out: ModelOutput, batch: Batch) -> ModelOutput:
        """``out`` with the task loss as its only term (``ce`` = ``total``) where the batch has targets."""
        if batch.y is not None:
            ce = self.task.loss(out.logits, batch.y)
            out.loss = ce
            out.losses = {"ce": ce, "total": ce}
        return out

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    # ----- trainer hooks (defaults do nothing) -----
    def on_fit_start(self, ctx: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_start(self, ctx: Any) -> None:
        """Called before each epoch's first batch (e.g. PMR prototype refresh)."""

    def after_backward(self, batch: Batch, output: ModelOutput, ctx: Any) -> None:
        """Called after ``loss.backward()``, before ``optimizer.step()`` (e.g. OGM-GE)."""

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        """Called after each epoch's last batch (e.g. TLA mining, G-Blend weights); returns values
        (numbers or strings) to record in that epoch's history row."""
        return {}
