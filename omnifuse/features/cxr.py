"""Chest X-rays: one image → one ResNet34 vector ``(1, 512)``, mask ``(1,)``.

The reader decodes a JPEG/PNG to grey 8-bit at ``image_size`` (DataLoader workers); the encoder runs
the frozen ResNet34 (:mod:`omnifuse.features.resnet`). With ``decode: cuda`` the workers read the
files and JPEGs are decoded in batches on the GPU (:mod:`omnifuse.features.gpu_decode`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from omnifuse.features.engine import Loaded, Sample, Setup
from omnifuse.features.gpu_decode import DESCRIPTION as GPU_DECODE
from omnifuse.features.gpu_decode import GpuJpegReader, check_gpu_decode
from omnifuse.features.images import load_grey_image
from omnifuse.features.options import ExtractOptions
from omnifuse.features.resnet import FEATURE_DIM, ImageEncoder, build_resnet34, image_attrs
from omnifuse.features.runtime import Runtime


@dataclass(frozen=True)
class CxrReader:
    size: int = 224

    def load(self, path: Path) -> Loaded:
        return Loaded(torch.from_numpy(load_grey_image(path, self.size)).unsqueeze(0))

    def collate(self, payloads: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(payloads)


class CxrEncoder:
    seq_len, dim = 1, FEATURE_DIM

    def __init__(self, images: ImageEncoder) -> None:
        self.images = images

    def __call__(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feats = self.images(batch).numpy()[:, None, :]
        return feats, np.ones(feats.shape[:2], dtype=bool)


def setup(modality: str, samples: list[Sample], opts: ExtractOptions, runtime: Runtime) -> Setup:
    if opts.decode == "cuda":
        check_gpu_decode(runtime.device)
    model, model_attrs = build_resnet34(opts.weights, opts.seed)
    encoder = CxrEncoder(ImageEncoder(model, runtime.device, runtime.precision))
    attrs: dict[str, Any] = {**model_attrs, "torchvision_version": str(torchvision.__version__)}
    reader: CxrReader | GpuJpegReader = CxrReader(opts.image_size)
    decode = "grey 8-bit (JPEG draft mode)"
    if opts.decode == "cuda":
        reader, decode = GpuJpegReader(opts.image_size, str(runtime.device)), GPU_DECODE
    attrs["preprocessing"] = {**image_attrs(opts.image_size), "decode": decode}
    return Setup(reader, encoder, 1, encoder.dim, attrs)
