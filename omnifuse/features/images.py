"""Decoding 2-D images and slices into the encoder's input size.

Rules:

* Chest X-rays (JPEG as in MIMIC-CXR-JPG, or PNG): decoded to grey-scale 8-bit and resized to
  ``size`` x ``size`` (bilinear with antialiasing, aspect ratio not kept). JPEGs are decoded at a
  reduced DCT scale that is still at least ``size`` on both sides (libjpeg "draft" mode), which makes
  full-resolution MIMIC images (about 2500 x 3000) several times cheaper to decode with no visible
  difference after resizing. 16-bit and float images are min-max scaled to 0-255 first.
* Volume slices (already windowed to [0, 1]) are resized the same way, as float16.
* Damaged files fail (:func:`load_grey_image` raises, the extraction report says ``failed``): besides
  what Pillow refuses (truncated files, broken PNG streams), any warning raised while decoding, and a
  JPEG whose decoder finished before the end of its entropy-coded data (what libjpeg reports as
  "Corrupt JPEG data: N extraneous bytes before marker" and Pillow ignores: a damaged region
  desynchronises the Huffman decoder, which then runs out of blocks early). The latter is measured by
  serving the file's last bytes to the decoder in small pieces (:class:`TailProbe`). It covers
  sequential (baseline) JPEGs, what MIMIC-CXR-JPG and most scanners write; in progressive JPEGs a
  damaged early scan can go unnoticed, as can damage that keeps the decoder in step.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

EOI = b"\xff\xd9"  # JPEG end-of-image marker
TAIL_BYTES = 256  # the last bytes before the end marker are served in pieces of PIECE_BYTES
PIECE_BYTES = 4
MAX_UNREAD = 8  # intact JPEGs: the decoder reads to the marker (measured: 0 unread bytes)


class TailProbe(io.BytesIO):
    """The file's bytes, with the last :data:`TAIL_BYTES` before the end-of-image marker served in
    pieces of :data:`PIECE_BYTES`: after decoding, :meth:`unread` is how many bytes before the marker
    the decoder did not ask for (to within a piece)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.eoi = data.rfind(EOI) if data.startswith(b"\xff\xd8\xff") else -1  # JPEGs only
        self.tail_start = max(0, self.eoi - TAIL_BYTES) if self.eoi >= 0 else len(data)

    def read(self, n: int | None = -1) -> bytes:
        pos = self.tell()
        if pos >= self.tail_start and self.eoi >= 0:
            n = PIECE_BYTES if n is None or n < 0 or n > PIECE_BYTES else n
        elif n is None or n < 0 or pos + n > self.tail_start:
            n = self.tail_start - pos
        return super().read(n)

    def unread(self) -> int:
        return self.eoi - self.tell() if self.eoi >= 0 else 0


def _warning_text(caught: list[warnings.WarningMessage]) -> str | None:
    found = [w for w in caught if not issubclass(w.category, DeprecationWarning | ResourceWarning)]
    return f"{found[0].category.__name__}: {found[0].message}" if found else None


def load_grey_image(path: str | Path, size: int) -> np.ndarray:
    """(size, size) uint8 image. Raises OSError / ValueError for missing, truncated or corrupt files,
    decoder warnings included (module docstring)."""
    probe = TailProbe(Path(path).read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr, fmt = _decode_grey(probe, size)
    problem = _warning_text(caught)
    if problem is not None:
        raise ValueError(f"{path}: decoder warning ({problem})")
    if fmt == "JPEG" and probe.unread() > MAX_UNREAD:
        raise ValueError(
            f"{path}: corrupt JPEG data: the decoder finished {probe.unread()} bytes before the end-of-image "
            "marker (extraneous data after a damaged entropy-coded segment)"
        )
    if arr.shape != (size, size):
        raise ValueError(f"{path}: decoded to shape {arr.shape}, expected ({size}, {size})")
    return arr


def _decode_grey(source: io.BytesIO, size: int) -> tuple[np.ndarray, str]:
    """Decode to grey 8-bit and resize (module docstring); the array and the file format."""
    with Image.open(source) as im:
        fmt = str(im.format)
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
    return arr, fmt


def resize_slices(slices: np.ndarray, size: int) -> torch.Tensor:
    """(S, H, W) float in [0, 1] → (S, 1, size, size) float16 (bilinear, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0).to(torch.float16)
