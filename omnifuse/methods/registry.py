"""The method registry: the plain ``METHODS`` dict (name -> class) and builders. Every method subclasses
:class:`omnifuse.methods.base.FusionMethod` and runs through the one trainer in :mod:`omnifuse.train`;
the names are those of the torch-free :data:`omnifuse.methods.METHOD_NAMES`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnifuse.methods import METHOD_NAMES
from omnifuse.methods.base import (
    Batch,
    FusionMethod,
    MethodConfig,
    ModelOutput,
    ModelSpec,
    config_from_dict,
)
from omnifuse.methods.concat import Concat
from omnifuse.methods.gblend import GBlend
from omnifuse.methods.medfuse import MedFuse
from omnifuse.methods.ogm_ge import OGMGE
from omnifuse.methods.omnifuse import OmniFuse, OmniFuseConfig
from omnifuse.methods.pmr import PMR
from omnifuse.methods.se_gate import SEGate
from omnifuse.methods.sum import SumFusion
from omnifuse.methods.unimodal import Unimodal

METHODS: dict[str, type[FusionMethod]] = {
    "omnifuse": OmniFuse,
    "concat": Concat,
    "unimodal": Unimodal,
    "sum": SumFusion,
    "se_gate": SEGate,
    "gblend": GBlend,
    "ogm_ge": OGMGE,
    "pmr": PMR,
    "medfuse": MedFuse,
}
if set(METHODS) != set(METHOD_NAMES):  # the torch-free list the workflow and CLI use
    raise RuntimeError(f"omnifuse.methods.METHOD_NAMES is {METHOD_NAMES}, METHODS has {tuple(METHODS)}")


def method_class(name: str) -> type[FusionMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}") from None


def method_config(name: str, overrides: Mapping[str, Any] | None = None) -> MethodConfig:
    """The method's config dataclass with its defaults, updated by ``overrides`` (validated)."""
    return config_from_dict(method_class(name).Config, overrides)


def build_method(
    name: str, spec: ModelSpec, cfg: MethodConfig | Mapping[str, Any] | None = None
) -> FusionMethod:
    cls = method_class(name)
    if not isinstance(cfg, MethodConfig):
        cfg = config_from_dict(cls.Config, cfg)
    return cls(spec, cfg)


__all__ = [
    "METHODS",
    "OGMGE",
    "PMR",
    "Batch",
    "Concat",
    "FusionMethod",
    "GBlend",
    "MedFuse",
    "MethodConfig",
    "ModelOutput",
    "ModelSpec",
    "OmniFuse",
    "OmniFuseConfig",
    "SEGate",
    "SumFusion",
    "Unimodal",
    "build_method",
    "method_class",
    "method_config",
]
