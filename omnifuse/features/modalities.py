"""Per-modality readers (decode one sample; run in DataLoader workers) and encoders (run the model).

* ``cxr``: one image → ``(1, 512)``; mask ``(1,)``.
* ``rep``: one report → ``(max_tokens, H)`` token states; mask = attention mask. The text is the
  configured section (see :mod:`omnifuse.features.report_sections`): FINDINGS of English MIMIC-CXR
  reports, the diagnostic sections of Chinese reports, or the whole report. Files are read as UTF-8
  (a BOM is ignored); if that fails, Windows-1252 for English and GB18030 for Chinese (noted in the
  extraction report).
* ``ct`` / ``pet``: one volume → ``(seq_len, 512)``, one row per selected axial slice (lowest slice
  first), mask over the slices the volume has (see :mod:`omnifuse.features.volumes`). With ``crop =
  "roi"`` the slices are those of a cube around the sample's region of interest (the cohort's
  ``roi_lps_mm`` or ``<modality>_roi_vox``); a sample without one is, per ``crop_fallback``, used
  uncropped (``whole``, noted), missing (``missing``) or failed (``fail``).

A reader raises :class:`SampleMissing` for a natural absence (a report without FINDINGS) and any
other exception for a bad input; the extraction engine turns both into rows of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnifuse.features.images import load_grey_image, resize_slices
from omnifuse.features.report_sections import report_text
from omnifuse.features.resnet import FEATURE_DIM, ImageEncoder
from omnifuse.features.text_model import TextEncoder, TokenWindows, WindowPlanner
from omnifuse.features.volumes import Roi, apply_window, crop_roi, read_volume, select_slices, spread_indices

IMAGE_MODALITIES = ("cxr",)
VOLUME_MODALITIES = ("ct", "pet")
EXTRACTED_MODALITIES = ("cxr", "rep", "ct", "pet")


class SampleMissing(Exception):
    """The input exists but has nothing to encode (e.g. no FINDINGS): the modality is missing."""


class BadInput(ValueError):
    """The input cannot be used (e.g. an empty report): counted as a failure."""


@dataclass(frozen=True)
class Loaded:
    payload: Any
    note: str = ""  # e.g. "IMPRESSION used instead", "48 slices subsampled to 32"


# --------------------------------------------------------------------------------------------------
# Readers (picklable, no model)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CxrReader:
    size: int = 224

    def load(self, path: Path) -> Loaded:
        return Loaded(torch.from_numpy(load_grey_image(path, self.size)).unsqueeze(0))

    def collate(self, payloads: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(payloads)


def read_report_file(path: Path, language: str) -> tuple[str, str]:
    """The text of a report file and a note naming a non-UTF-8 encoding when one was needed."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        pass
    fallback = "gb18030" if language == "zh" else "cp1252"
    try:
        return raw.decode(fallback), f"decoded as {fallback}"
    except UnicodeDecodeError as exc:
        raise BadInput(f"neither UTF-8 nor {fallback} text ({exc.reason} at byte {exc.start})") from exc


@dataclass
class ReportReader:
    planner: WindowPlanner
    section: str = "findings"  # findings | whole
    fallback: str = "none"  # none | impression
    language: str = "en"

    def load(self, path: Path) -> Loaded:
        text, note = read_report_file(path, self.language)
        found = report_text(text, self.section, self.fallback)
        if found.status == "bad":
            raise BadInput(found.reason)
        if found.status == "missing":
            raise SampleMissing(found.reason)
        return Loaded(found.text, "; ".join(n for n in (note, found.reason) if n))

    def collate(self, payloads: list[str]) -> TokenWindows:
        return self.planner(payloads)


@dataclass(frozen=True)
class VolumeReader:
    modality: str  # ct | pet
    seq_len: int
    window: tuple[float, float]
    slice_mode: str = "all"
    slice_n: int = 0
    max_slices: int = 64
    size: int = 224
    crop: str = "none"  # none | roi
    crop_half_width_mm: float = 40.0
    crop_fallback: str = "whole"  # whole | missing | fail
    uses_roi: bool = True  # the engine passes each sample's ROI to load()

    def load(self, path: Path, roi: Roi | None = None) -> Loaded:
        volume = read_volume(path, self.modality)
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


# --------------------------------------------------------------------------------------------------
# Encoders (hold the model; run in the main process)
# --------------------------------------------------------------------------------------------------


class CxrEncoder:
    seq_len, dim = 1, FEATURE_DIM

    def __init__(self, images: ImageEncoder) -> None:
        self.images = images

    def __call__(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feats = self.images(batch).numpy()[:, None, :]
        return feats, np.ones(feats.shape[:2], dtype=bool)


class ReportEncoder:
    def __init__(self, text: TextEncoder, max_tokens: int, chunk: int) -> None:
        self.text, self.seq_len, self.dim, self.chunk = text, max_tokens, text.dim, chunk

    def __call__(self, batch: TokenWindows) -> tuple[np.ndarray, np.ndarray]:
        return self.text(batch, chunk=self.chunk)


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
