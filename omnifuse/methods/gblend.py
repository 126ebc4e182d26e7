"""Gradient-Blending (Wang, Tran and Feiszli, "What Makes Training Multi-Modal Classification Networks
Hard?", CVPR 2020).

* Heads: one head per modality on its embedding v^m (the M unimodal heads) and one fused head on the
  concatenation [v^1; …; v^M] (linear, or MLPs when ``head_hidden`` > 0); the prediction is the fused
  head's. Missing modalities enter the fused head as their encoder on a zero input (like every method);
  a unimodal head's loss only counts the samples that observe its modality.
* Loss: L = Σ_k w_k L_k over the K = M + 1 heads (unimodal and fused), L_k the task's cross-entropy.
* Weights (eq. 6-7 of the paper): a patient-level held-out slice of the training fold (``holdout``,
  8 %) is never trained on. With L^T_k and L^V_k head k's loss on the training part and on the held-out
  slice (eval mode, no gradient), measured at the two ends n and n + N of a window of N =
  ``super_epoch`` epochs (n = 0: the initial model):
      ΔG_k = L^V_k(n) − L^V_k(n + N)                       (generalisation gain)
      O_k(t) = L^V_k(t) − L^T_k(t),  ΔO_k = O_k(n + N) − O_k(n)   (change in overfitting)
      w_k = (ΔG_k / ΔO_k²) / Σ_j (ΔG_j / ΔO_j²)
  ``mode: online`` re-estimates the weights at the end of every super-epoch (epochs N, 2N, …) for the
  next one; ``offline`` estimates them once, at the end of the first super-epoch, and keeps them. The
  paper's offline variant trains the networks for N epochs, estimates, and restarts training from
  scratch with the weights; ours continues the same run (one trainer, one early-stopping protocol).
  Until the first estimate the weights are uniform, w_k = 1 / K.
* Degenerate cases (the paper does not say; our rule): a head whose held-out loss did not decrease
  (ΔG_k ≤ 0, or undefined because no held-out sample observes its modality) gets w_k = 0: it brought
  no generalisation in the window. |ΔO_k| is floored at ``min_delta_o`` (1e-3) before squaring, so a
  head whose overfitting did not change cannot take an unbounded weight; ΔO_k ≤ 0 (overfitting shrank)
  needs no special case since only ΔO_k² enters. If every head gets 0 (no head generalised better) the
  previous weights are kept.

History per epoch: the weights used in the epoch (``gb_w_<head>``, head = modality name or ``fused``),
and at every re-estimation ΔG and ΔO per head (``gb_dG_<head>``, ``gb_dO_<head>``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head

log = logging.getLogger("omnifuse.train")
MODES = ("online", "offline")


@dataclass
class GBlendConfig(MethodConfig):
    holdout: float = 0.08  # held-out share of the training fold's patients (never trained on)
    mode: str = "online"  # "online": re-estimate every super-epoch; "offline": once
    super_epoch: int = 3  # window N (epochs) over which ΔG and ΔO are measured
    min_delta_o: float = 1e-3  # floor on |ΔO| before squaring

    def validate(self) -> None:
        super().validate()
        if self.mode not in MODES:
            raise ValueError(f"gblend.mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"gblend.holdout must be in (0, 1), got {self.holdout}")
        if self.super_epoch < 1:
            raise ValueError(f"gblend.super_epoch must be >= 1, got {self.super_epoch}")
        if self.min_delta_o <= 0:
            raise ValueError(f"gblend.min_delta_o must be > 0, got {self.min_delta_o}")


def blend_weights(
    train_start: torch.Tensor,
    held_start: torch.Tensor,
    train_end: torch.Tensor,
    held_end: torch.Tensor,
    previous: torch.Tensor,
    min_delta_o: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w, ΔG, ΔO) per head from the training / held-out losses at the two ends of a window (module
    docstring, including the degenerate cases). All arguments are (K,) tensors."""
    delta_g = held_start - held_end
    delta_o = (held_end - train_end) - (held_start - train_start)
    denom = delta_o.abs().clamp_min(min_delta_o).pow(2)
    gain = torch.nan_to_num(delta_g, nan=0.0)
    raw = torch.where(gain > 0, gain / torch.nan_to_num(denom, nan=1.0), torch.zeros_like(gain))
    total = raw.sum()
    if not bool(torch.isfinite(total)) or float(total) <= 0:
        return previous.clone(), delta_g, delta_o
    return raw / total, delta_g, delta_o


class GBlend(FusionMethod):
    name: ClassVar[str] = "gblend"
    Config: ClassVar[type[MethodConfig]] = GBlendConfig
    cfg: GBlendConfig

    def __init__(self, spec: ModelSpec, cfg: GBlendConfig):
        super().__init__(spec, cfg)
        d, c = cfg.d, spec.n_outputs
        self.heads = nn.ModuleDict(
            {m: make_head(d, c, cfg.head_hidden, cfg.dropout) for m in spec.modalities}
        )
        self.fused_head = make_head(spec.n_modalities * d, c, cfg.head_hidden, cfg.dropout)
        self.head_names = (*spec.modalities, "fused")
        k = len(self.head_names)
        self.register_buffer("weights", torch.full((k,), 1.0 / k), persistent=False)
        self._anchor: tuple[torch.Tensor, torch.Tensor] | None = None
        self._estimates = 0

    @property
    def holdout_fraction(self) -> float:
        return self.cfg.holdout

    def head_logits(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unimodal logits (B, M, C), fused logits (B, C))."""
        uni = torch.stack([self.heads[m](v[:, i]) for i, m in enumerate(self.modalities)], 1)
        return uni, self.fused_head(v.flatten(1))

    def head_sample_losses(self, uni: torch.Tensor, fused: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, K) per-sample loss of every head (unimodal heads first, the fused head last)."""
        per = [self.task.sample_loss(uni[:, i], y) for i in range(uni.shape[1])]
        return torch.stack([*per, self.task.sample_loss(fused, y)], 1)

    @staticmethod
    def reduce_losses(per_sample: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sums (K,), counts (K,)): unimodal heads over the samples observing their modality, the fused
        head over every sample."""
        w = torch.cat([observed, torch.ones_like(observed[:, :1])], 1).to(per_sample.dtype)
        return (per_sample * w).sum(0), w.sum(0)

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        uni, fused = self.head_logits(v)
        out = ModelOutput(logits=fused, modality_logits=uni, modality_mask=batch.observed, embeddings=v)
        if batch.y is None:
            return out
        sums, counts = self.reduce_losses(self.head_sample_losses(uni, fused, batch.y), batch.observed)
        per_head = sums / counts.clamp_min(1.0)
        total = (self.weights.to(per_head.dtype) * per_head).sum()
        out.loss = total
        out.losses = {
            **{f"uni_{m}": per_head[i] for i, m in enumerate(self.modalities)},
            "fused": per_head[-1],
            "total": total,
        }
        return out

    @torch.no_grad()
    def evaluate_heads(self, ctx: Any, idx: torch.Tensor) -> torch.Tensor:
        """(K,) mean loss of every head on rows ``idx`` (eval mode; NaN for a head with no sample)."""
        was_training = self.training
        self.eval()
        sums = torch.zeros(len(self.head_names), dtype=torch.float64)
        counts = torch.zeros(len(self.head_names), dtype=torch.float64)
        for batch in ctx.batches(idx, targets=False, labels=True):
            uni, fused = self.head_logits(self.embed(batch).inputs)
            s, c = self.reduce_losses(self.head_sample_losses(uni, fused, batch.y), batch.observed)
            sums += s.double().cpu()
            counts += c.double().cpu()
        self.train(was_training)
        return torch.where(counts > 0, sums / counts.clamp_min(1.0), torch.full_like(sums, float("nan")))

    def measure(self, ctx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.evaluate_heads(ctx, ctx.train_idx), self.evaluate_heads(ctx, ctx.holdout_idx)

    def on_fit_start(self, ctx: Any) -> None:
        k = len(self.head_names)
        self.weights.fill_(1.0 / k)
        self._estimates = 0
        if len(ctx.holdout_idx) == 0:
            log.warning("gblend: the held-out slice is empty; the blending weights stay uniform")
            self._anchor = None
            return
        self._anchor = self.measure(ctx)

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        row: dict[str, Any] = {f"gb_w_{h}": float(self.weights[i]) for i, h in enumerate(self.head_names)}
        due = ctx.epoch % self.cfg.super_epoch == 0
        if self._anchor is None or not due or (self.cfg.mode == "offline" and self._estimates > 0):
            return row
        train_now, held_now = self.measure(ctx)
        weights, delta_g, delta_o = blend_weights(
            self._anchor[0], self._anchor[1], train_now, held_now,
            self.weights.double().cpu(), self.cfg.min_delta_o,
        )  # fmt: skip
        self.weights.copy_(weights.to(self.weights.dtype))
        self._anchor = (train_now, held_now)
        self._estimates += 1
        for i, h in enumerate(self.head_names):
            row[f"gb_dG_{h}"] = float(delta_g[i])
            row[f"gb_dO_{h}"] = float(delta_o[i])
        shown = ", ".join(f"{h}={float(w):.3f}" for h, w in zip(self.head_names, weights, strict=True))
        log.info("gblend epoch %d: weights %s", ctx.epoch, shown)
        return row
