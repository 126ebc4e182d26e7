"""Building blocks: prediction heads and the cascaded residual autoencoder (CRA) of OmniFuse.

CRA (docs/design.md "Method decisions"): K residual autoencoders over the concatenated embeddings v (B, M·d).
RA_k receives x_k = v + Σ_{j<k} Δz_j, encodes it to a latent c_k and decodes a residual Δz_k; the
output is v' = v + Σ_k Δz_k. The latents c_1..c_K are returned for the joint head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def make_head(in_dim: int, n_out: int, hidden: int = 0, dropout: float = 0.0) -> nn.Module:
    """A linear head, or Linear → ReLU → Dropout → Linear when ``hidden`` > 0."""
    if hidden <= 0:
        return nn.Linear(in_dim, n_out)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


class ResidualAutoencoder(nn.Module):
    """x → encoder (Linear, ReLU, Linear) → latent c → decoder (ReLU, Linear, ReLU, Linear) → Δz."""

    def __init__(self, dim: int, hidden: int = 256, latent: int = 128):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(x)
        return latent, self.decoder(latent)


@dataclass
class CRAOutput:
    out: torch.Tensor  # (B, D) v' = v + Σ Δz_k
    latents: list[torch.Tensor]  # K × (B, latent)
    deltas: list[torch.Tensor]  # K × (B, D)
    inputs: list[torch.Tensor]  # K × (B, D): the input of each RA, x_k = v + Σ_{j<k} Δz_j


class CascadedResidualAutoencoder(nn.Module):
    def __init__(self, dim: int, k: int = 5, hidden: int = 256, latent: int = 128):
        super().__init__()
        if k < 1:
            raise ValueError(f"the CRA needs at least one residual autoencoder, got K={k}")
        self.blocks = nn.ModuleList(ResidualAutoencoder(dim, hidden, latent) for _ in range(k))

    def forward(self, v: torch.Tensor) -> CRAOutput:
        x = v
        latents, deltas, inputs = [], [], []
        for block in self.blocks:
            inputs.append(x)
            latent, delta = block(x)
            latents.append(latent)
            deltas.append(delta)
            x = x + delta
        return CRAOutput(out=x, latents=latents, deltas=deltas, inputs=inputs)
