"""Run directories ↔ :class:`omnifuse.workflow.plan.Run`, and the order of modality combinations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from omnifuse.formats.run import Run, parse_setting


def parse_run_dir(path: str | Path) -> Run:
    """``.../{dataset}/runs/{task}/{variant}/{combo}/{setting}`` → Run (from the last six path parts)."""
    parts = Path(path).parts
    if len(parts) < 6 or parts[-5] != "runs":
        raise ValueError(
            f"{path}: not a run directory (expected .../{{dataset}}/runs/{{task}}/{{variant}}/{{combo}}/"
            "{setting})"
        )
    dataset, _, task, variant, combo, setting = parts[-6:]
    parse_setting(setting)  # validates
    return Run(dataset, task, variant, combo, setting)


def combo_parts(combo: str) -> tuple[str, ...]:
    return tuple(combo.split("+"))


def modality_order(combos: Iterable[str]) -> list[str]:
    """Dataset modality order inferred from combination names (which list modalities in dataset order):
    the largest combination's order first, then any other modality in order of appearance."""
    combos = list(combos)
    order: list[str] = []
    for combo in sorted(combos, key=lambda c: -len(combo_parts(c))):
        for m in combo_parts(combo):
            if m not in order:
                order.append(m)
    return order


def sort_combos(combos: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """Unique combinations, smallest first, then by dataset modality order (pairs, then all three)."""
    combos = list(dict.fromkeys(combos))
    order = list(order) if order is not None else modality_order(combos)
    rank = {m: i for i, m in enumerate(order)}
    return sorted(
        combos, key=lambda c: (len(combo_parts(c)), [rank.get(m, len(rank)) for m in combo_parts(c)])
    )
