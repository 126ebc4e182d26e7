"""Phenotype definitions in the mimic3-benchmarks YAML structure.

A file maps a group name to ``{use_in_benchmark, type, id, codes}`` where ``codes`` are ICD-9-CM codes
without dots (HCUP CCS 2015). OmniFuse also reads an optional ``codes_icd10`` list per group, because
MIMIC-IV codes admissions after October 2015 in ICD-10-CM and a code string alone is ambiguous across
versions. The benchmark labels are the groups with ``use_in_benchmark: true`` (25 in the HCUP file),
ordered by name as in mimic3-benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

DEMO_DEFINITIONS = "phenotypes_demo.yaml"


@dataclass(frozen=True)
class PhenotypeGroup:
    name: str
    kind: str  # "acute" | "chronic" | "unknown"
    codes: tuple[str, ...]  # ICD-9-CM
    codes_icd10: tuple[str, ...] = ()

    def codes_for(self, version: int) -> tuple[str, ...]:
        return self.codes if version == 9 else self.codes_icd10


def demo_definitions_path() -> Path:
    """Path of the project's own small 25-group definition file (the demo default)."""
    return Path(str(resources.files("omnifuse.resources").joinpath(DEMO_DEFINITIONS)))


def _normalise(codes: object, path: Path, name: str, key: str) -> tuple[str, ...]:
    if not isinstance(codes, list):
        raise ValueError(f"{path}: group {name!r}: '{key}' must be a list of codes")
    return tuple(str(c).strip().upper().replace(".", "") for c in codes)


def load_phenotypes(path: str | Path | None = None, benchmark_only: bool = True) -> list[PhenotypeGroup]:
    """Read a definition file (default: the demo file); return its groups sorted by name.

    Raises ``ValueError`` naming the file and group when an entry lacks ``codes`` or
    ``use_in_benchmark``, and when a code of one ICD version is listed under two returned groups.
    """
    path = Path(path) if path is not None else demo_definitions_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"phenotype definition file not found: {path}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of group name -> definition")
    groups: list[PhenotypeGroup] = []
    owner: dict[tuple[int, str], str] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "codes" not in entry or "use_in_benchmark" not in entry:
            raise ValueError(f"{path}: group {name!r} needs 'use_in_benchmark' and 'codes'")
        if benchmark_only and not entry["use_in_benchmark"]:
            continue
        group = PhenotypeGroup(
            name=str(name),
            kind=str(entry.get("type", "unknown")),
            codes=_normalise(entry["codes"], path, name, "codes"),
            codes_icd10=_normalise(entry.get("codes_icd10", []), path, name, "codes_icd10"),
        )
        for version in (9, 10):
            for code in group.codes_for(version):
                other = owner.setdefault((version, code), group.name)
                if other != group.name:
                    raise ValueError(
                        f"{path}: ICD-{version} code {code} is listed in both {other!r} and {group.name!r}"
                    )
        groups.append(group)
    return sorted(groups, key=lambda g: g.name)
