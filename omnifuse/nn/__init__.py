"""Shared neural building blocks for stage 2: modality encoders, heads, the cascaded residual
autoencoder, and the task-specific losses (binary, multi-label, multi-class)."""

from omnifuse.nn.blocks import CascadedResidualAutoencoder, CRAOutput, ResidualAutoencoder, make_head
from omnifuse.nn.encoders import ModalityEncoders, build_encoder, encoder_kind
from omnifuse.nn.task import Task

__all__ = [
    "CRAOutput",
    "CascadedResidualAutoencoder",
    "ModalityEncoders",
    "ResidualAutoencoder",
    "Task",
    "build_encoder",
    "encoder_kind",
    "make_head",
]
