"""CT and PET volumes: one volume → ``(seq_len, 512)``, one ResNet34 vector per selected axial slice
(lowest slice first), mask over the slices the volume has (:mod:`omnifuse.features.volumes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from omnifuse.features.engine import Loaded, Sample, Setup
from omnifuse.features.images import resize_slices
from omnifuse.features.options import ExtractOptions
from omnifuse.features.resnet import FEATURE_DIM, ImageEncoder, build_resnet34, image_attrs
from omnifuse.features.runtime import Runtime
from omnifuse.features.volumes import (
    apply_window,
    dicom_slice_count,
    is_nifti,
    nifti_slice_count,
    read_volume,
    select_slices,
    selected_count,
)


@dataclass(frozen=True)
class VolumeReader:
    modality: str  # ct | pet
    seq_len: int
    window: tuple[float, float]
    slice_mode: str = "all"
    slice_n: int = 0
    max_slices: int = 64
    size: int = 224
    allow_missing_slices: bool = False  # DICOM series with gaps: encode (noted) instead of failing

    def load(self, path: Path) -> Loaded:
        volume = read_volume(path, self.modality, self.allow_missing_slices)
        n = volume.data.shape[0]
        idx = select_slices(n, self.slice_mode, self.slice_n, self.max_slices or 0)
        notes = list(volume.notes)
        if len(idx) > self.seq_len:  # more slices than the pre-scan promised: spread them evenly
            idx = idx[np.round(np.linspace(0, len(idx) - 1, self.seq_len)).astype(int)]
        if self.slice_mode == "all" and len(idx) < n:
            notes.append(f"{n} slices subsampled to {len(idx)}")
        slices = apply_window(volume.data[idx], *self.window)
        return Loaded(resize_slices(slices, self.size), "; ".join(notes))

    def collate(self, payloads: list[torch.Tensor]) -> list[torch.Tensor]:
        return payloads


class VolumeEncoder:
    dim = FEATURE_DIM

    def __init__(self, images: ImageEncoder, seq_len: int, chunk: int) -> None:
        self.images, self.seq_len, self.chunk = images, seq_len, chunk

    def __call__(self, batch: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        # float16 slices are widened first: CPU autocast refuses to mix float16 into bf16 ops
        feats = self.images(torch.cat([v.float() for v in batch]), chunk=self.chunk).numpy()
        out = np.zeros((len(batch), self.seq_len, self.dim), dtype=np.float32)
        mask = np.zeros((len(batch), self.seq_len), dtype=bool)
        start = 0
        for b, vol in enumerate(batch):
            n = len(vol)
            out[b, :n], mask[b, :n] = feats[start : start + n], True
            start += n
        return out, mask


def volume_seq_len(samples: list[Sample], opts: ExtractOptions) -> int:
    """Rows per volume: the largest selected slice count among the available inputs (headers only)."""
    longest = 1
    for s in samples:
        if not (s.available and s.path is not None):
            continue
        try:
            if s.path.is_dir():
                count = dicom_slice_count(s.path)
            elif is_nifti(s.path):
                count = nifti_slice_count(s.path)
            else:
                continue
        except Exception:  # unreadable: it fails (and is reported) when decoded
            continue
        if count > 0:
            longest = max(longest, selected_count(count, opts.slice_mode, opts.slice_n, opts.max_slices))
    return longest


def setup(modality: str, samples: list[Sample], opts: ExtractOptions, runtime: Runtime) -> Setup:
    model, model_attrs = build_resnet34(opts.weights, opts.seed)
    images = ImageEncoder(model, runtime.device, runtime.precision)
    seq_len = volume_seq_len(samples, opts)
    reader = VolumeReader(
        modality, seq_len, (float(opts.window[0]), float(opts.window[1])), opts.slice_mode,
        opts.slice_n, opts.max_slices, opts.image_size, opts.allow_missing_slices,
    )  # fmt: skip
    encoder = VolumeEncoder(images, seq_len, opts.batch_size)
    attrs: dict[str, Any] = {**model_attrs, "torchvision_version": str(torchvision.__version__)}
    attrs["preprocessing"] = {
        **image_attrs(opts.image_size),
        "units": "HU" if modality == "ct" else "SUV (body weight)",
        "window": list(reader.window),
        "slices": {"mode": opts.slice_mode, "n": opts.slice_n, "max": opts.max_slices},
        "allow_missing_slices": opts.allow_missing_slices,
        "slice_order": "inferior to superior; rows anterior to posterior; columns right to left",
    }
    return Setup(reader, encoder, seq_len, encoder.dim, attrs, max(1, opts.batch_size // max(seq_len, 1)))
