"""Atomic, deterministic writers of the report's artefacts (CSV, PNG + PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from omnifuse.formats.atomic import atomic_path

# no timestamps or tool versions in the files: the same numbers give byte-identical outputs
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
PNG_METADATA = {"Software": None}


def write_csv(path: str | Path, frame: pl.DataFrame) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)
    return path


def figure_paths(out: str | Path) -> tuple[Path, Path]:
    """``fig.png`` → (``fig.png``, ``fig.pdf``): the same stem in both formats."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"--out {out}: a figure path must end in .png (the .pdf is written next to it)")
    return out.with_suffix(".png"), out.with_suffix(".pdf")


def save_figure(fig: Any, out: str | Path, dpi: int) -> tuple[Path, Path]:
    """Write ``fig`` as PNG and PDF (atomically, without timestamps) and close it."""
    import matplotlib.pyplot as plt

    png, pdf = figure_paths(out)
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, metadata=PNG_METADATA)
        with atomic_path(pdf) as tmp:
            fig.savefig(tmp, format="pdf", metadata=PDF_METADATA)
    finally:
        plt.close(fig)
    return png, pdf
