"""Names of the registered fusion methods and OmniFuse's Table 4 ablation switches, without importing
torch: the workflow plans runs from them when Snakemake parses the rules, and the CLI lists them in
``--help``. ``omnifuse.methods`` checks at import that ``METHODS`` has exactly these names."""

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
