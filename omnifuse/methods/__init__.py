"""Fusion methods, one file each (module, loss terms and config together), run by the one trainer of
:mod:`omnifuse.train`.

This package module is torch-free: it only names the methods and OmniFuse's Table 4 ablation switches,
so that the workflow can plan runs and the CLI can list methods without importing torch. The classes
are registered in the plain ``METHODS`` dict of :mod:`omnifuse.methods.registry`, which checks at
import that it has exactly these names.
"""

from __future__ import annotations

METHOD_NAMES: tuple[str, ...] = (
    "omnifuse", "concat", "unimodal", "sum", "se_gate", "gblend", "ogm_ge", "pmr", "medfuse",
)  # fmt: skip

# Table 4 rows: (a) none = concatenation; (b) DWFuse; (c) DWFuse + IMP-fw; (d) DWFuse + TLA + IMP-fw;
# (e) DWFuse + IMP-fw + IMP-bw; (f) all four.
ABLATIONS: dict[str, dict[str, bool]] = {
    "a": {"dwfuse": False, "tla": False, "imp_fw": False, "imp_bw": False},
    "b": {"dwfuse": True, "tla": False, "imp_fw": False, "imp_bw": False},
    "c": {"dwfuse": True, "tla": False, "imp_fw": True, "imp_bw": False},
    "d": {"dwfuse": True, "tla": True, "imp_fw": True, "imp_bw": False},
    "e": {"dwfuse": True, "tla": False, "imp_fw": True, "imp_bw": True},
    "f": {"dwfuse": True, "tla": True, "imp_fw": True, "imp_bw": True},
}
