"""Task kinds and their losses: one place that turns logits and labels into probabilities, losses and
"probability of the true class" for binary, multi-label and multi-class tasks.

Label tensors: ``binary`` and ``multilabel`` use float 0/1 of shape (B, C) (C = 1 for binary);
``multiclass`` uses class indices of shape (B,). Logits are always (B, C).

* binary / multilabel: sigmoid probabilities, per-label binary cross-entropy (every "CE" of the method
  becomes per-label BCE, docs/design.md "Multi-label");
* multiclass: softmax probabilities, categorical cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("binary", "multilabel", "multiclass")
EPS = 1e-6


@dataclass(frozen=True)
class Task:
    kind: str
    n_outputs: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "binary" and self.n_outputs != 1:
            raise ValueError(f"a binary task has one output, got {self.n_outputs}")
        if self.kind == "multiclass" and self.n_outputs < 2:
            raise ValueError(f"a multiclass task needs at least two classes, got {self.n_outputs}")

    @property
    def multiclass(self) -> bool:
        return self.kind == "multiclass"

    @property
    def width(self) -> int:
        """Width of the per-element loss / true-class probability: 1 for multiclass, else C."""
        return 1 if self.multiclass else self.n_outputs

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) probabilities: sigmoid per label, or softmax over classes."""
        return logits.softmax(-1) if self.multiclass else torch.sigmoid(logits)

    def logits_from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`probs` (up to the softmax's shift): logit(p) or log p."""
        p = probs.clamp(EPS, 1 - EPS)
        return p.log() if self.multiclass else torch.log(p) - torch.log1p(-p)

    def elementwise_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, width) loss: per-label BCE, or the sample's cross-entropy as a (B, 1) column."""
        if self.multiclass:
            return F.cross_entropy(logits, y, reduction="none").unsqueeze(-1)
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none")

    def sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) loss per sample (multi-label: mean over labels)."""
        return self.elementwise_loss(logits, y).mean(-1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar mean loss over the batch (and labels); 0 for an empty batch."""
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        return self.elementwise_loss(logits, y).mean()

    def prob_true(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, width) probability the prediction gives to the true class (per label for multi-label)."""
        if self.multiclass:
            return logits.softmax(-1).gather(1, y.view(-1, 1))
        p = torch.sigmoid(logits)
        return torch.where(y > 0.5, p, 1 - p)
