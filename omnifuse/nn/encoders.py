"""Modality encoders shared by every fusion method: cached features (B, L, D) + mask (B, L) → (B, d).

Which encoder a modality gets (:func:`encoder_kind`):

* ``ehr``: a 2-layer LSTM (hidden 256) over the time steps; the embedding is the top layer's output at
  the last valid step (masked steps are zeroed; the LSTM is causal, so padding after the last valid step
  never reaches it), projected to d when hidden != d;
* pooled vectors (L = 1, e.g. the 512-d chest X-ray vector): an MLP 512 → d (Linear + ReLU);
* report tokens (``rep``): masked attention pooling over tokens (``token_encoder: attention``; scores
  w·tanh(W h_t), softmax over valid tokens, pooled vector → Linear + ReLU → d), or one transformer layer
  before the pooling (``token_encoder: transformer``);
* CT / PET slices and any other sequence: masked attention pooling over slices → d.

A missing modality is represented by the encoder applied to a zero input (docs/design.md "Method decisions"):
:meth:`ModalityEncoders.placeholders` runs each encoder on one all-zero sequence whose steps are all
valid. Every row handed to an encoder must have at least one valid step (the dataset guarantees it by
marking the steps of absent rows valid; their data are zeros).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

ENCODER_KINDS = ("lstm", "mlp", "attention", "transformer")
# encoders whose output ignores the steps after a row's last valid one and is the same for a row of
# identical steps (e.g. a zero input) at any length: their batches may drop padding steps, and their
# missing-modality placeholder is computed on a single zero step
LENGTH_INVARIANT = ("mlp", "attention", "transformer")
# oneDNN's bf16 LSTM on CPU works on blocks of rows that divide the batch: a row count without a divisor
# of 8-16 (a prime such as 509, the training stays of one TLA mining pass, or 2 x 31) gets narrow
# blocks, 1.5-4x slower per row (measured: docs/performance.md). Under CPU bf16 autocast the batch is
# padded with zero rows up to the next count that has one; rows are independent, so the padding never
# reaches the real rows' outputs. A training batch of 64 plus the placeholder row (65 = 5 x 13) stays.
BF16_LSTM_BLOCKS = range(8, 17)


def bf16_lstm_rows(rows: int) -> int:
    """The row count a CPU bf16 LSTM batch of ``rows`` is padded to (see ``BF16_LSTM_BLOCKS``)."""
    n = rows
    while not any(n % b == 0 for b in BF16_LSTM_BLOCKS):
        n += 1
    return n


def encoder_kind(modality: str, seq_len: int, token_encoder: str = "attention") -> str:
    """The encoder rule above: ehr → lstm, L = 1 → mlp, rep → ``token_encoder``, else attention."""
    if modality == "ehr":
        return "lstm"
    if seq_len == 1:
        return "mlp"
    if modality == "rep":
        return token_encoder
    return "attention"


def cpu_bf16_autocast(x: torch.Tensor) -> bool:
    """True when ``x`` is on the CPU and CPU autocast to bfloat16 is on."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def last_valid_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last True step of each row of a (B, L) mask (L - 1 for an empty row)."""
    length = mask.shape[1]
    flipped_first = mask.flip(1).to(torch.uint8).argmax(1)
    last = length - 1 - flipped_first
    return torch.where(mask.any(1), last, torch.full_like(last, length - 1))


class LSTMEncoder(nn.Module):
    """Multi-layer LSTM over the valid steps; output at the last valid step (→ d)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(
            in_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.proj = nn.Identity() if hidden == out_dim else nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        x = x * mask.unsqueeze(-1).to(x.dtype)
        pad = bf16_lstm_rows(rows) - rows if cpu_bf16_autocast(x) else 0
        if pad:
            x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
        out, _ = self.lstm(x)
        out = out[:rows]
        idx = last_valid_index(mask).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return self.proj(out.gather(1, idx).squeeze(1))


class MLPEncoder(nn.Module):
    """Pooled vector → Linear + ReLU (a sequence with L > 1 is first mean-pooled over valid steps)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            pooled = x[:, 0]
        else:
            w = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.net(pooled)


class AttentionPool(nn.Module):
    """Masked additive attention pooling: a_t = softmax_t(w · tanh(W h_t)) over valid t; Σ a_t h_t."""

    def __init__(self, in_dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # cast once for both products: autocast would cast x again for the pooling product (a
            # batch of report tokens, 64 x ~110 x 384 values, per cast); the same values either way
            x = x.to(torch.get_autocast_dtype(device))
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1)


class AttentionEncoder(nn.Module):
    """Masked attention pooling over tokens / slices, then Linear + ReLU → d (pool first, project after:
    the projection runs once per sample, not once per token)."""

    def __init__(self, in_dim: int, out_dim: int, attn_hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        self.pool = AttentionPool(in_dim, attn_hidden)
        self.out = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(x, mask))


class TransformerEncoder(nn.Module):
    """Tokens → Linear to d → one transformer layer (padding masked) → masked attention pooling → d."""

    def __init__(
        self, in_dim: int, out_dim: int, attn_hidden: int = 128, heads: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.layer = nn.TransformerEncoderLayer(
            out_dim, heads, dim_feedforward=2 * out_dim, dropout=dropout, batch_first=True
        )
        self.pool = AttentionPool(out_dim, attn_hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.proj(x), src_key_padding_mask=~mask)
        return self.pool(h, mask)


def build_encoder(
    kind: str,
    in_dim: int,
    out_dim: int,
    *,
    ehr_hidden: int = 256,
    ehr_layers: int = 2,
    attn_hidden: int = 128,
    dropout: float = 0.0,
) -> nn.Module:
    if kind == "lstm":
        return LSTMEncoder(in_dim, out_dim, hidden=ehr_hidden, layers=ehr_layers, dropout=dropout)
    if kind == "mlp":
        return MLPEncoder(in_dim, out_dim, dropout=dropout)
    if kind == "attention":
        return AttentionEncoder(in_dim, out_dim, attn_hidden=attn_hidden, dropout=dropout)
    if kind == "transformer":
        return TransformerEncoder(in_dim, out_dim, attn_hidden=attn_hidden, dropout=dropout)
    raise ValueError(f"unknown encoder kind {kind!r}; expected one of {ENCODER_KINDS}")


class ModalityEncoders(nn.Module):
    """One encoder per modality (in a fixed modality order), each mapping (B, L, D) → (B, d)."""

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, int]],
        d: int = 256,
        *,
        ehr_hidden: int = 256,
        ehr_layers: int = 2,
        attn_hidden: int = 128,
        token_encoder: str = "attention",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.modalities = tuple(shapes)
        self.shapes = {m: (int(s[0]), int(s[1])) for m, s in shapes.items()}
        self.d = d
        self.kinds = {m: encoder_kind(m, self.shapes[m][0], token_encoder) for m in self.modalities}
        self.encoders = nn.ModuleDict(
            {
                m: build_encoder(
                    self.kinds[m],
                    self.shapes[m][1],
                    d,
                    ehr_hidden=ehr_hidden,
                    ehr_layers=ehr_layers,
                    attn_hidden=attn_hidden,
                    dropout=dropout,
                )
                for m in self.modalities
            }
        )

    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoders[modality](x, mask)

    def length_invariant(self) -> frozenset[str]:
        """Modalities whose encoder is in :data:`LENGTH_INVARIANT`."""
        return frozenset(m for m in self.modalities if self.kinds[m] in LENGTH_INVARIANT)

    def _zero_steps(self, modality: str) -> int:
        """Steps of the zero input a placeholder is computed on (1 where the length cannot matter)."""
        return 1 if self.kinds[modality] in LENGTH_INVARIANT else self.shapes[modality][0]

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, d): every modality's encoder on its batch input."""
        return torch.stack([self.encode(m, x[m], mask[m]) for m in self.modalities], dim=1)

    def with_placeholders(
        self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, d) encodings of the batch and (M, d) placeholders (each encoder on one all-zero,
        all-valid input). For the LSTM the zero input rides along as one more row of the batch: its time
        loop costs about as much for 1 row as for 64; the other encoders run it on its own (copying a
        batch of token states to append one row would cost more than the placeholder itself)."""
        true, placeholders = [], []
        for m in self.modalities:
            xm, mm = x[m], mask[m]
            steps = xm.shape[1] if self.kinds[m] == "lstm" else self._zero_steps(m)
            zero = torch.zeros(1, steps, xm.shape[2], dtype=xm.dtype, device=xm.device)
            valid = torch.ones(1, steps, dtype=torch.bool, device=mm.device)
            if self.kinds[m] == "lstm":
                out = self.encode(m, torch.cat([xm, zero]), torch.cat([mm, valid]))
                true.append(out[:-1])
                placeholders.append(out[-1])
            else:
                true.append(self.encode(m, xm, mm))
                placeholders.append(self.encode(m, zero, valid)[0])
        return torch.stack(true, dim=1), torch.stack(placeholders)

    def placeholders(self, device: torch.device | None = None) -> torch.Tensor:
        """(M, d): each encoder applied to a zero input (all steps valid), the missing-modality value."""
        rows = []
        for m in self.modalities:
            length, dim = self._zero_steps(m), self.shapes[m][1]
            zero = torch.zeros(1, length, dim, device=device)
            rows.append(self.encode(m, zero, torch.ones(1, length, dtype=torch.bool, device=device))[0])
        return torch.stack(rows)
