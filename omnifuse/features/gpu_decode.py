"""Chest X-ray JPEGs decoded on the GPU (``features.cxr.decode: cuda``; the default is ``cpu``).

On the CPU path (:func:`omnifuse.features.images.load_grey_image`) every file is decoded and resized in
a DataLoader worker. With ``decode: cuda`` the workers only read each file's bytes and check its JPEG
structure; the main process decodes a whole model batch at once with nvJPEG
(``torchvision.io.decode_jpeg(..., device="cuda")``) and resizes it on the GPU. The preprocessing is
the CPU path's:

* grey 8-bit: nvJPEG's grey output is the JPEG's luma channel, which is also what libjpeg hands
  Pillow's draft mode ``L`` (for grey JPEGs, as in MIMIC-CXR-JPG, both are the image itself);
* the image is first reduced by the factor Pillow's draft mode uses (the largest of 8, 4, 2, 1 that
  keeps both sides at least ``size``: :func:`draft_factor`), averaging blocks of that many pixels,
  which is what libjpeg's scaled IDCT approximates (exactly so for 1/8: the block's DC coefficient);
* then resized to ``size`` x ``size`` (bilinear, antialiased, aspect ratio not kept) and rounded to
  uint8.

The two paths agree to within a few grey levels (:data:`MAX_GREY_DIFFERENCE` is what the tests allow),
not bit for bit: different IDCTs, block averaging for the scaled IDCT, and float against Pillow's
fixed-point resampling. Measured with torchvision's CPU decoder in place of nvJPEG (the same code
otherwise) on 2544 x 3056 films: at most 2 grey levels apart, 0.2 on average, and ResNet34 features
within 0.1 % (relative L2). The cache records which decoder ran (``preprocessing.decode``).

Inputs the GPU path does not take are decoded on the CPU path, in the worker: PNGs and other
formats, and JPEGs nvJPEG is not given (lossless, arithmetic-coded, 12-bit, CMYK, or a structure
:func:`jpeg_header` does not accept). A JPEG that nvJPEG rejects in the main process is decoded there
on the CPU path (noted in the extraction report). Damaged files are decided by the CPU decoder: a
file whose structure is broken (no frame header, no scan, no end-of-image marker after the scan:
truncated) goes the CPU path, which fails it with its reason. Not checked on the GPU path: damage
inside the entropy-coded data that leaves the structure intact, which libjpeg reports as "extraneous
bytes" and the CPU path fails; such a file fails only if nvJPEG refuses it (whether nvJPEG reports
such damage has not been tried). Keep ``decode: cpu`` where inputs may be damaged that way.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from omnifuse.features.engine import Loaded, PartialBatch
from omnifuse.features.images import load_grey_image

DECODERS = ("cpu", "cuda")
SOI, EOI, SOS = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"
# frame headers nvJPEG decodes: baseline, extended and progressive Huffman (8-bit samples)
NVJPEG_FRAMES = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
_NOT_FRAMES = {0xC4, 0xC8, 0xCC}  # DHT, JPG extension and DAC share the 0xC0-0xCF range
CHUNK = 16  # images resized together (bounds the float32 full-resolution copies on the GPU)
MAX_GREY_DIFFERENCE = 4  # largest difference from the CPU path the tests allow (grey levels, 0-255)
DESCRIPTION = (
    "grey 8-bit, nvJPEG on the GPU (reduced by the draft-mode factor with block averaging, then "
    "resized as above)"
)


@dataclass(frozen=True)
class JpegHeader:
    """What the frame header (SOFn) says, and where the first scan starts."""

    height: int
    width: int
    components: int
    precision: int
    frame: int  # the SOF marker's second byte (0xC0 baseline, 0xC2 progressive, ...)
    scan_start: int  # offset of the first SOS marker


def jpeg_header(data: bytes) -> JpegHeader:
    """Parse the markers up to the first scan; ``ValueError`` when ``data`` is not a JPEG with a frame
    header followed by a scan."""
    if not data.startswith(SOI):
        raise ValueError("not a JPEG (no start-of-image marker)")
    pos, frame = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            raise ValueError("corrupt JPEG: end-of-image marker before the first scan")
        if marker == 0xDA:
            if frame is None:
                raise ValueError("corrupt JPEG: a scan before the frame header")
            return JpegHeader(*frame, scan_start=pos)
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            raise ValueError(f"corrupt JPEG: segment at byte {pos} runs past the end of the file")
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_FRAMES:
            seg = data[pos + 4 : pos + 2 + length]
            if len(seg) < 6:
                raise ValueError("corrupt JPEG: short frame header")
            height, width = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big")
            frame = (height, width, seg[5], seg[0], marker)
        pos += 2 + length
    raise ValueError("corrupt JPEG: no scan (truncated header)")


def gpu_decodable(header: JpegHeader, data: bytes) -> bool:
    """nvJPEG gets the file: a Huffman-coded 8-bit grey or 3-component frame, sides > 0, and an
    end-of-image marker after the first scan (otherwise the file is truncated)."""
    return (
        header.frame in NVJPEG_FRAMES
        and header.precision == 8
        and header.components in (1, 3)
        and min(header.height, header.width) > 0
        and data.rfind(EOI) > header.scan_start
    )


def draft_factor(height: int, width: int, size: int) -> int:
    """The reduction Pillow's JPEG draft mode picks for a ``size`` x ``size`` target: the largest of
    8, 4, 2, 1 not above ``min(width // size, height // size)``."""
    scale = min(width // size, height // size)
    return next((s for s in (8, 4, 2) if scale >= s), 1)


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG's bytes (uint8 CPU tensor), read in a worker, to be decoded in the main process."""

    data: torch.Tensor
    height: int
    width: int
    path: str  # for the CPU fallback and error messages


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 1, H, W)`` uint8 → ``(B, 1, size, size)`` uint8: block averaging by :func:`draft_factor`,
    then an antialiased bilinear resize (module docstring), in float32 whatever autocast says."""
    height, width = images.shape[-2:]
    factor = draft_factor(height, width, size)
    with torch.autocast(images.device.type, enabled=False):
        x = images.float()
        if factor > 1:
            x = F.avg_pool2d(x, factor, stride=factor, ceil_mode=True)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.round_().clamp_(0, 255).to(torch.uint8)


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """torchvision >= 0.29 warns that its image decoders move to TorchCodec, at every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        yield


def decode_batch(items: list[EncodedJpeg], device: torch.device | str) -> list[torch.Tensor]:
    """Decode ``items`` to ``(1, H, W)`` uint8 grey tensors on ``device`` (one nvJPEG call on CUDA;
    libjpeg-turbo through torchvision on the CPU, as a reference of the same code path)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with _quiet_deprecation():
        out = decode_jpeg([it.data for it in items], mode=ImageReadMode.GRAY, device=device)
    return list(out)


def shrink_all(decoded: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """:func:`shrink` for images of any sizes: those of one size together, :data:`CHUNK` at a time."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, img in enumerate(decoded):
        groups.setdefault(tuple(img.shape), []).append(k)
    out: list[torch.Tensor | None] = [None] * len(decoded)
    for members in groups.values():
        for start in range(0, len(members), CHUNK):
            part = members[start : start + CHUNK]
            small = shrink(torch.stack([decoded[k] for k in part]), size)
            for k, img in zip(part, small, strict=True):
                out[k] = img
    return [img for img in out if img is not None]


@dataclass(frozen=True)
class GpuJpegReader:
    """The chest X-ray reader of ``decode: cuda``: ``load`` runs in DataLoader workers (bytes, or a
    CPU-decoded image for what nvJPEG does not get), ``collate`` decodes a batch in the main process on
    ``device``. Picklable; touches no GPU in the workers."""

    size: int = 224
    device: str = "cuda"

    def load(self, path: Path) -> Loaded:
        data = Path(path).read_bytes()
        try:
            header = jpeg_header(data)
        except ValueError:
            header = None
        if header is None or not gpu_decodable(header, data):
            note = (
                "" if header is None and not data.startswith(SOI) else "decoded on the CPU (not for nvJPEG)"
            )
            return Loaded(torch.from_numpy(load_grey_image(path, self.size)).unsqueeze(0), note)
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return Loaded(EncodedJpeg(tensor, header.height, header.width, str(path)))

    def collate(self, payloads: list[torch.Tensor | EncodedJpeg]) -> torch.Tensor | PartialBatch:
        """``(B, 1, size, size)`` uint8 on the device; a :class:`PartialBatch` when some fail."""
        device = torch.device(self.device)
        out: list[torch.Tensor | None] = [
            p.to(device, non_blocking=True) if isinstance(p, torch.Tensor) else None for p in payloads
        ]
        jpegs = [k for k, p in enumerate(payloads) if isinstance(p, EncodedJpeg)]
        failed: dict[int, str] = {}
        notes: dict[int, str] = {}
        if jpegs:
            items = [payloads[k] for k in jpegs]
            try:
                decoded: list[torch.Tensor | None] = list(decode_batch(items, device))  # type: ignore[arg-type]
            except (RuntimeError, ValueError):  # one bad file fails the whole call: one by one
                decoded = [self._decode_one(it, device) for it in items]  # type: ignore[arg-type]
            for k, img, it in zip(jpegs, decoded, items, strict=True):
                if img is not None and tuple(img.shape[-2:]) != (it.height, it.width):  # type: ignore[union-attr]
                    img = None
                if img is None:  # nvJPEG refused it: the CPU decoder decides
                    try:
                        cpu = load_grey_image(it.path, self.size)  # type: ignore[union-attr]
                    except Exception as exc:
                        failed[k] = f"{type(exc).__name__}: {exc}"[:300]
                        continue
                    out[k] = torch.from_numpy(cpu).unsqueeze(0).to(device)
                    notes[k] = "decoded on the CPU (nvJPEG refused it)"
                else:
                    out[k] = img
            todo = [k for k in jpegs if k not in failed and k not in notes]
            for k, small in zip(todo, shrink_all([out[k] for k in todo], self.size), strict=True):  # type: ignore[misc]
                out[k] = small
        kept = [img for k, img in enumerate(out) if k not in failed]
        batch = torch.stack(kept) if kept else None  # type: ignore[arg-type]
        return PartialBatch(batch, failed, notes) if failed or notes else batch

    @staticmethod
    def _decode_one(item: EncodedJpeg, device: torch.device) -> torch.Tensor | None:
        try:
            return decode_batch([item], device)[0]
        except (RuntimeError, ValueError):
            return None


def check_gpu_decode(device: torch.device) -> None:
    """A clear error before extraction when ``decode: cuda`` cannot run here."""
    if device.type != "cuda":
        raise ValueError(
            "features.cxr.decode is 'cuda' (nvJPEG on the GPU), but this extraction runs on the CPU "
            "(features.device cpu, or auto without a visible CUDA GPU); use features.cxr.decode: cpu "
            "(omnifuse extract cxr --decode cpu) or run the job on a GPU"
        )
    probe = _tiny_jpeg()
    try:
        decode_batch([EncodedJpeg(probe, 8, 8, "<probe>")], device)
    except (RuntimeError, NotImplementedError) as exc:
        raise ValueError(
            f"features.cxr.decode is 'cuda', but torchvision cannot decode JPEGs on {device} here "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); use features.cxr.decode: cpu"
        ) from exc


def _tiny_jpeg() -> torch.Tensor:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
