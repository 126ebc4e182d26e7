"""The frozen image encoder: torchvision ResNet34 without its fc layer (512-d average-pooled vector).

Used for chest X-rays (one vector per image) and for CT/PET (one vector per axial slice).
Inputs are grey-scale images in [0, 1] replicated to 3 channels and normalised with the ImageNet
mean/std. Weights policy (``weights``):

* ``imagenet``: torchvision's ``ResNet34_Weights.IMAGENET1K_V1``, read from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/resnet34-b627a593.pth``). Nothing is downloaded at run time: when the
  file is not there the error names the path and how to provide it.
* a path to a local checkpoint (a ``state_dict``, or a dict holding one under ``state_dict`` /
  ``model``; ``module.`` prefixes and ``fc.*`` keys are ignored); its sha256 is the weights identity
  recorded in the cache.
* ``none``: random initialisation from ``seed`` (reproducible), with a loud warning in the log and in
  the cache attributes: features from random weights carry little of what a trained encoder sees.
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omnifuse.features.runtime import batch_pieces, sha256_file

log = logging.getLogger("omnifuse")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_DIM = 512
RANDOM_WARNING = (
    "RANDOM WEIGHTS: the ResNet34 was randomly initialised (weights: none); these features are not "
    "ImageNet features. Use weights: imagenet or a checkpoint path for real experiments."
)


def image_attrs(size: int) -> dict[str, Any]:
    """The ``preprocessing`` attributes every image cache records (resize, channels, normalisation)."""
    return {
        "size": size,
        "resize": "bilinear, antialiased, to size x size (aspect ratio not kept)",
        "channels": "grey replicated to 3",
        "batchnorm": "folded into the convolutions",
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    }


def _bare_resnet34() -> nn.Module:
    from torchvision.models import resnet34

    model = resnet34(weights=None)
    model.fc = nn.Identity()
    return model


def _imagenet_state() -> tuple[dict[str, torch.Tensor], str]:
    from torchvision.models import ResNet34_Weights

    weights = ResNet34_Weights.IMAGENET1K_V1
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not file.is_file():
        raise FileNotFoundError(
            f"ImageNet ResNet34 weights not found at {file}, and nothing is downloaded at run time. "
            f"Download {weights.url} once on a machine with internet and copy it to that path (or set "
            "TORCH_HOME), or set the image weights to the path of a local checkpoint, or to 'none' for "
            "random weights."
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    return state, f"imagenet:{weights.name} ({file.name}, sha256 {sha256_file(file)[:16]})"


def _local_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    if not path.is_file():
        raise FileNotFoundError(f"image encoder checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(raw).__name__}")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    return state, f"sha256:{sha256_file(path)}"


@functools.lru_cache(maxsize=2)
def _random_resnet34(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _bare_resnet34()


def build_resnet34(weights: str, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder in eval mode (no gradients) and its provenance attributes.

    ``weights``: ``imagenet``, ``none`` or a checkpoint path (see the module docstring)."""
    attrs: dict[str, Any] = {"encoder": "torchvision.resnet34 (fc removed; 512-d average pool)"}
    if weights == "none":
        model = copy.deepcopy(_random_resnet34(seed))  # a private copy of the (memoised) random init
        attrs["weights"] = f"none (random init, seed {seed})"
        attrs["weights_warning"] = RANDOM_WARNING
        log.warning("%s", RANDOM_WARNING)
    else:
        state, identity = _imagenet_state() if weights == "imagenet" else _local_state(Path(weights))
        model = _bare_resnet34()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
            detail = " ".join(str(exc).split())[:400]
            raise ValueError(f"image weights {weights!r} do not fit ResNet34: {detail}") from exc
        attrs["weights"] = identity
    model.eval().requires_grad_(False)
    return model, attrs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it (same function, fewer passes
    over memory: about 1.5x faster on CPU); returns a new module, ``model`` is left as it is."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model)

    def visit(module: nn.Module) -> None:
        for child in module.children():
            visit(child)
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()

    visit(model.eval())
    return model


class ImageEncoder:
    """ResNet34 features of grey-scale batches: ``(B, 1, H, W)`` uint8 (0-255) or float in [0, 1].

    BatchNorm is folded into the convolutions; at ``bf16`` / ``fp16`` precision the whole network
    runs in that type (weights and activations), which is faster on CPU than autocast's casts
    around each convolution; features are returned as float32."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32") -> None:
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        net = fold_batchnorm(model).requires_grad_(False)
        self.model = net.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)

    def __call__(self, images: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        """(B, 512) float32 on the CPU. The batch runs in pieces of at most ``chunk`` images (0: the
        whole batch), the remainder in power-of-two pieces (:func:`~omnifuse.features.runtime.batch_pieces`).
        Call inside :meth:`omnifuse.features.runtime.Runtime.inference`."""
        pieces = images.split(batch_pieces(len(images), chunk if chunk > 0 else len(images)))
        return torch.cat([self.model(self.prepare(p)).float().cpu() for p in pieces])
