"""Decoding 2-D images and slices into the encoder's input size.

Rules:

* Chest X-rays (JPEG as in MIMIC-CXR-JPG, or PNG): decoded to grey-scale 8-bit and resized to
  ``size`` x ``size`` (bilinear with antialiasing, aspect ratio not kept). JPEGs are decoded at a
  reduced DCT scale that is still at least ``size`` on both sides (libjpeg "draft" mode), which makes
  full-resolution MIMIC images (about 2500 x 3000) several times cheaper to decode with no visible
  difference after resizing. 16-bit and float images are min-max scaled to 0-255 first.
* Volume slices (already windowed to [0, 1]) are resized the same way, as float16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def load_grey_image(path: str | Path, size: int) -> np.ndarray:
    """(size, size) uint8 image. Raises OSError / ValueError for missing, truncated or corrupt files."""
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L", (size, size))
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(im, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            im = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
        elif im.mode != "L":
            im = im.convert("L")
        out = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.array(out, dtype=np.uint8)  # a writable copy
    if arr.shape != (size, size):
        raise ValueError(f"{path}: decoded to shape {arr.shape}, expected ({size}, {size})")
    return arr


def resize_slices(slices: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) float in [0, 1] → (S, 1, size, size) float16 (bilinear, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0).to(torch.float16)
