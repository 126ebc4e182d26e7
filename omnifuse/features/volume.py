"""CT and PET volumes: one volume → ``(seq_len, 512)``, one ResNet34 vector per selected axial slice
(lowest slice first), mask over the slices the volume has (:mod:`omnifuse.features.volumes`).

With ``crop = "roi"`` the slices are those of a cube around the sample's region of interest (the
cohort's ``roi_lps_mm`` or ``<modality>_roi_vox``; :func:`omnifuse.features.volumes.crop_roi`); a sample
without one is, per ``crop_fallback``, used uncropped (``whole``, noted), missing (``missing``) or
failed (``fail``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from omnifuse.features.engine import BadInput, Loaded, Sample, SampleMissing, Setup
from omnifuse.features.images import resize_slices
from omnifuse.features.options import ExtractOptions
from omnifuse.features.resnet import FEATURE_DIM, ImageEncoder, build_resnet34, image_attrs
from omnifuse.features.runtime import Runtime
from omnifuse.features.volumes import (
    apply_window,
    crop_roi,
    dicom_slice_count,
    dicom_slice_spacing,
    is_nifti,
    nifti_slice_count,
    nifti_slice_spacing,
    read_volume,
    select_slices,
    selected_count,
    spread_indices,
)
from omnifuse.formats.cohort import ROI_COLUMN, Roi


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
    crop: str = "none"  # none | roi
    crop_half_width_mm: float = 40.0
    crop_fallback: str = "whole"  # whole | missing | fail
    uses_roi: bool = True  # the engine passes each sample's ROI to load()

    def load(self, path: Path, roi: Roi | None = None) -> Loaded:
        volume = read_volume(path, self.modality, self.allow_missing_slices)
        notes = list(volume.notes)
        data = volume.data
        if self.crop == "roi":
            if roi is not None:
                data, crop_notes = crop_roi(volume, roi, self.crop_half_width_mm)
                notes += crop_notes
            elif self.crop_fallback == "whole":
                notes.append("no ROI: whole volume used")
            elif self.crop_fallback == "missing":
                raise SampleMissing("no ROI in the cohort (crop_fallback: missing)")
            else:
                raise BadInput(
                    "no ROI in the cohort (roi_lps_mm or <modality>_roi_vox) and crop_fallback is fail"
                )
        n = data.shape[0]
        idx = select_slices(n, self.slice_mode, self.slice_n, self.max_slices or 0)
        if len(idx) > self.seq_len:  # more slices than the pre-scan promised: spread them evenly
            idx = idx[spread_indices(len(idx), self.seq_len)]
        if self.slice_mode == "all" and len(idx) < n:
            notes.append(f"{n} slices subsampled to {len(idx)}")
        slices = apply_window(data[idx], *self.window)
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
    """Rows per volume: the largest selected slice count among the available inputs (headers only;
    with a crop, the crop's slices: ``2 * round(half-width / slice spacing) + 1``)."""
    longest = 1
    for s in samples:
        if not (s.available and s.path is not None):
            continue
        try:
            if s.path.is_dir():
                count = dicom_slice_count(s.path)
                spacing = dicom_slice_spacing(s.path) if opts.crop == "roi" and s.roi else None
            elif is_nifti(s.path):
                count = nifti_slice_count(s.path)
                spacing = nifti_slice_spacing(s.path) if opts.crop == "roi" and s.roi else None
            else:
                continue
        except Exception:  # unreadable: it fails (and is reported) when decoded
            continue
        if spacing:
            count = 2 * round(opts.crop_half_width_mm / spacing) + 1
        if count > 0:
            longest = max(longest, selected_count(count, opts.slice_mode, opts.slice_n, opts.max_slices))
    return longest


def crop_attrs(opts: ExtractOptions, samples: list[Sample]) -> dict[str, Any]:
    """The crop as the cache's preprocessing records it."""
    if opts.crop == "none":
        return {"mode": "none"}
    with_roi = sum(1 for s in samples if s.available and s.roi is not None)
    return {
        "mode": "roi",
        "half_width_mm": opts.crop_half_width_mm,
        "fallback": opts.crop_fallback,
        "roi_columns": f"<modality>_roi_vox (voxel, NIfTI as stored), else {ROI_COLUMN} (LPS mm)",
        "grid": "2*round(half_width/spacing)+1 voxels per axis centred on the voxel nearest to the ROI "
        "centre; outside the volume: the volume minimum",
        "samples_with_roi": with_roi,
    }


def setup(modality: str, samples: list[Sample], opts: ExtractOptions, runtime: Runtime) -> Setup:
    model, model_attrs = build_resnet34(opts.weights, opts.seed)
    images = ImageEncoder(model, runtime.device, runtime.precision)
    seq_len = volume_seq_len(samples, opts)
    reader = VolumeReader(
        modality, seq_len, (float(opts.window[0]), float(opts.window[1])), opts.slice_mode,
        opts.slice_n, opts.max_slices, opts.image_size, opts.allow_missing_slices, opts.crop,
        float(opts.crop_half_width_mm), opts.crop_fallback,
    )  # fmt: skip
    encoder = VolumeEncoder(images, seq_len, opts.batch_size)
    attrs: dict[str, Any] = {**model_attrs, "torchvision_version": str(torchvision.__version__)}
    attrs["preprocessing"] = {
        **image_attrs(opts.image_size),
        "units": "HU" if modality == "ct" else "SUV (body weight)",
        "window": list(reader.window),
        "slices": {"mode": opts.slice_mode, "n": opts.slice_n, "max": opts.max_slices},
        "allow_missing_slices": opts.allow_missing_slices,
        "crop": crop_attrs(opts, samples),
        "slice_order": "inferior to superior; rows anterior to posterior; columns right to left",
    }
    return Setup(reader, encoder, seq_len, encoder.dim, attrs, max(1, opts.batch_size // max(seq_len, 1)))
