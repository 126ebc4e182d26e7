"""Where and how precisely the frozen encoders run: device, precision, CPU threads.

Rules:

* ``device``: ``cpu``, ``cuda`` (an error if no GPU is visible) or ``auto`` (CUDA when available).
* ``precision``: ``fp32``; ``bf16`` (on CUDA when the GPU supports it, on CPU when oneDNN has bf16
  kernels for this processor, e.g. AVX512-BF16 or AMX; otherwise an error); ``fp16`` (CUDA only: an
  error on CPU); ``auto`` = bf16 where supported, else fp32. Text models run under autocast (layer
  norms and softmax stay in float32); the image network is cast to the type as a whole (see
  :class:`omnifuse.features.resnet.ImageEncoder`). The precision actually used is recorded in the
  cache attributes, because it changes the numbers.
* Encoders run in eval mode under ``torch.inference_mode``; images use channels_last.
* ``threads`` bounds torch's intra-op threads (0 = the CPUs this process may use).
* ``fp32`` on CUDA is IEEE float32: TensorFloat-32 (on by default for cuDNN convolutions, a 10-bit
  mantissa) is switched off, so that ``precision: fp32`` means the same arithmetic on a GPU as on a
  CPU (docs/design.md "Reproducibility across machines").
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

log = logging.getLogger("omnifuse")

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16 (resolved)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """``torch.inference_mode`` plus autocast at the resolved precision."""
        dtype = self.autocast_dtype
        with torch.inference_mode():
            if dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=dtype):
                    yield

    def gpu_name(self) -> str:
        """The GPU model in use ("" on CPU)."""
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else ""

    def describe(self) -> str:
        return f"{self.device.type} ({self.gpu_name() or 'cpu'}), {self.precision}"


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Check the requested device and precision against the hardware (errors name the setting)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is visible (use device: auto or cpu)")
    dev = torch.device(
        "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    bf16_ok = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_supports_bf16()
    if precision == "auto":
        precision = "bf16" if bf16_ok else "fp32"
    elif precision == "bf16" and not bf16_ok:
        raise ValueError(
            f"precision 'bf16' is not supported on this {dev.type} (no native bf16 kernels); "
            "use precision: fp32 or auto"
        )
    elif precision == "fp16" and dev.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA GPU; on CPU use bf16 (or auto / fp32)")
    if dev.type == "cuda" and precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions are not fp32
        torch.backends.cuda.matmul.allow_tf32 = False
    return Runtime(dev, precision)


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here (e.g. ``AVX512``, ``AVX2``): kernels for
    another set sum in another order, so float32 results can differ in the last bits."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        return "unknown"


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_workers(device_type: str, threads: int) -> int:
    """DataLoader workers for ``num_workers: -1``. Overlapping decoding with compute needs cores the
    model does not use: on CPU the cores left over by the torch threads (at most 4; none on a
    2-core machine, where a worker would only slow the model down), with a GPU all cores but one
    (at most 8)."""
    cpus = available_cpus()
    if device_type == "cuda":
        return max(1, min(8, cpus - 1))
    return max(0, min(4, cpus - threads))


def set_threads(threads: int) -> int:
    """Bound torch's intra-op threads (0 = the CPUs available); returns the number set."""
    n = threads if threads > 0 else available_cpus()
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the kernel (glibc only;
    returns whether the settings took).

    glibc serves large allocations (here: every batch tensor of report tokens, several MB) with fresh
    ``mmap`` pages and returns them on ``free``, so each batch pays page faults on memory the previous
    batch just released: in a training job on the demo cohort a quarter of the time was kernel time.
    With the thresholds raised, freed blocks stay in the heap for the next batch. The peak memory is
    the same (the largest set of live tensors); the memory is given back when the process ends."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to do
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30)
    return bool(ok and libc.mallopt(m_top_pad, 64 << 20))


def batch_pieces(n: int, largest: int) -> list[int]:
    """Sizes to run a batch of ``n`` in: as many ``largest`` as fit, then the binary decomposition of
    the rest (10 → 8, 2). Batch sizes then come from a handful of values, so CPU kernels (oneDNN
    builds one per input shape, at a cost of many forward passes) are built once, not per batch."""
    largest = max(1, largest)
    sizes = [largest] * (n // largest)
    rest = n % largest
    bit = 1 << max(rest.bit_length() - 1, 0)
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (the identity of local weights recorded in cache attributes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
