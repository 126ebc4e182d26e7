"""MedFuse (Hayat, Geras and Shamout, MLHC 2022): the modality embeddings read as a sequence by an LSTM.

Every modality embedding v^m (the shared encoders) is projected to a common size by its own linear layer
(``proj_dim``, 256 = the EHR feature size MedFuse's fusion LSTM reads); the projected embeddings of the
sample's *observed* modalities form a sequence, in the cohort's modality order (EHR first, as in
MedFuse), which a one-layer LSTM (``lstm_hidden`` 512, MedFuse's fusion LSTM width) reads; its last
hidden state goes to the head (linear, or an MLP when ``head_hidden`` > 0). Missing modalities are
skipped: the sequence has variable length (MedFuse packs it with ``pack_padded_sequence``). Here the
observed modalities are moved to the front of the sequence (a stable sort, so their order is kept),
the rest of the sequence is zero, and the LSTM output is read at step (length − 1): the LSTM is causal,
so this equals the final hidden state of the packed sequence (a test checks it) and a missing
modality's data can never reach the prediction. This is MedFuse's own missing-modality mechanism, so
the zero-input placeholder of the other methods is not used. A sample with no observed modality (only
possible at prediction time) reads one all-zero step.

The loss is the task's cross-entropy (per-label BCE for multi-label) of the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


@dataclass
class MedFuseConfig(MethodConfig):
    proj_dim: int = 256  # common size every modality embedding is projected to (the LSTM input)
    lstm_hidden: int = 512  # hidden size of the fusion LSTM (MedFuse: 512)

    def validate(self) -> None:
        super().validate()
        for name in ("proj_dim", "lstm_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"medfuse.{name} must be >= 1, got {getattr(self, name)}")


def observed_first(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's observed steps to the front (order kept) and zero the rest.

    ``x`` (B, M, p), ``observed`` (B, M) bool → (sequence (B, M, p), lengths (B,))."""
    order = torch.argsort((~observed).to(torch.int8), dim=1, stable=True)
    seq = x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    lengths = observed.sum(1)
    valid = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    return seq * valid.unsqueeze(-1).to(seq.dtype), lengths


class MedFuse(FusionMethod):
    name: ClassVar[str] = "medfuse"
    Config: ClassVar[type[MethodConfig]] = MedFuseConfig
    cfg: MedFuseConfig

    def __init__(self, spec: ModelSpec, cfg: MedFuseConfig):
        super().__init__(spec, cfg)
        self.projections = nn.ModuleDict({m: nn.Linear(cfg.d, cfg.proj_dim) for m in spec.modalities})
        self.lstm = nn.LSTM(cfg.proj_dim, cfg.lstm_hidden, num_layers=1, batch_first=True)
        self.head = make_head(cfg.lstm_hidden, spec.n_outputs, cfg.head_hidden, cfg.dropout)

    def fuse(self, v: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Last hidden state (B, lstm_hidden) of the LSTM over the observed modalities' projections."""
        z = torch.stack([self.projections[m](v[:, i]) for i, m in enumerate(self.modalities)], 1)
        seq, lengths = observed_first(z, observed)
        out, _ = self.lstm(seq)
        last = (lengths - 1).clamp_min(0)
        return out[torch.arange(out.shape[0], device=out.device), last]

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.encoders(batch.x, batch.mask)
        logits = self.head(self.fuse(v, batch.observed))
        seen = v * batch.observed.unsqueeze(-1).to(v.dtype)  # what the LSTM can see (missing: zero)
        out = ModelOutput(logits=logits, embeddings=seen)
        return self.with_task_loss(out, batch)
