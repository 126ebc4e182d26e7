"""The generic bring-your-own-cohort manifest (e.g. the lung CT/PET/report cohort).

A manifest is a CSV with ``patient_id``, a label column (``datasets.<name>.label_column``) and one
path column per modality (named after the modality: ``ct``, ``pet``, ``rep``, ...), each path relative
to the manifest's folder; an empty cell means the modality is missing. Other columns are kept.

Rules: one row per patient (``sample_id = patient_id``); the label must be one of the configured class
names (its class index becomes ``y_<task>``); ``has_<m>`` is true when the path is non-empty and the file
or folder exists; ``<m>_path`` keeps the manifest's relative path (empty -> null), resolved later
against the manifest's folder.

Optional region-of-interest columns (e.g. the lesion of a lung cohort, for ``features.<m>.crop``); an
empty cell means no ROI for that patient. A cell holds 3 numbers (a point) or 6 (two opposite corners
of a box, in any order), separated by spaces, commas or semicolons, optionally in brackets (quote the
cell when it contains commas): ``"-80.5 12 -30.2 -60.5 32 -10.2"``.

* ``roi_lps_mm``: patient coordinates in millimetres in the DICOM convention (LPS: x increases toward
  the patient's left, y toward posterior, z toward the head), the frame of ImagePositionPatient; the
  same ROI serves every volume modality of the patient (CT and PET of one PET/CT share it).
* ``roi_ras_mm``: the same in the RAS convention of NIfTI / nibabel / 3D Slicer (x toward the right,
  y toward anterior): converted to LPS by negating x and y. A row may fill only one of the two.
* ``<m>_roi_vox`` (``ct_roi_vox``, ``pet_roi_vox``): 0-based voxel indices ``i j k`` of that modality's
  NIfTI file as stored (the array nibabel returns), mapped through the file's affine at extraction;
  it wins over the millimetre ROI for that modality. Not valid for DICOM series (no single voxel order).

The cohort gets ``roi_lps_mm`` and ``<m>_roi_vox`` as lists ``[x0, y0, z0, x1, y1, z1]`` with
``x0 <= x1`` etc. (see :mod:`omnifuse.formats.cohort`). A malformed cell is an error naming the file, line,
patient and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from omnifuse.formats.cohort import ROI_COLUMN, ROI_MODALITIES, roi_voxel_column

RESERVED = ("sample_id", "fold")
ROI_RAS_COLUMN = "roi_ras_mm"
_ROI_SPLIT = re.compile(r"[\s,;]+")


def parse_roi(text: str) -> list[float] | None:
    """A manifest ROI cell → ``[x0, y0, z0, x1, y1, z1]`` sorted per axis (None for an empty cell).
    Raises ``ValueError`` describing what is wrong."""
    body = text.strip().strip("[]()").strip()
    if not body:
        return None
    parts = [p for p in _ROI_SPLIT.split(body) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected numbers, got {text!r}") from None
    if len(values) not in (3, 6):
        raise ValueError(
            f"expected 3 numbers (a point) or 6 (two opposite corners of a box), got {len(values)} "
            f"in {text!r}"
        )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"expected finite numbers, got {text!r}")
    lo, hi = values[:3], values[3:] if len(values) == 6 else values[:3]
    return [min(a, b) for a, b in zip(lo, hi, strict=True)] + [max(a, b) for a, b in zip(lo, hi, strict=True)]


def _ras_to_lps(box: list[float]) -> list[float]:
    x0, y0, z0, x1, y1, z1 = box
    return [-x1, -y1, z0, -x0, -y0, z1]


def _roi_columns(frame: pl.DataFrame, path: Path, modalities: Sequence[str]) -> list[pl.Series]:
    """The cohort's ROI columns from the manifest's optional ones (module docstring)."""
    ids = frame["patient_id"].to_list()

    def parsed(column: str) -> list[list[float] | None]:
        out = []
        for line, (pid, cell) in enumerate(zip(ids, frame[column].to_list(), strict=True), start=2):
            try:
                out.append(parse_roi(cell or ""))
            except ValueError as exc:
                raise ValueError(f"{path}: line {line} (patient {pid!r}), column {column}: {exc}") from None
        return out

    series = []
    mm: list[list[float] | None] | None = None
    if ROI_COLUMN in frame.columns:
        mm = parsed(ROI_COLUMN)
    if ROI_RAS_COLUMN in frame.columns:
        ras = parsed(ROI_RAS_COLUMN)
        if mm is None:
            mm = [None] * len(ras)
        for line, (pid, a, b) in enumerate(zip(ids, mm, ras, strict=True), start=2):
            if a is not None and b is not None:
                raise ValueError(
                    f"{path}: line {line} (patient {pid!r}) fills both {ROI_COLUMN} and {ROI_RAS_COLUMN}: "
                    "give the ROI once"
                )
        mm = [a if b is None else _ras_to_lps(b) for a, b in zip(mm, ras, strict=True)]
    if mm is not None:
        series.append(pl.Series(ROI_COLUMN, mm, dtype=pl.List(pl.Float64)))
    for m in ROI_MODALITIES:
        column = roi_voxel_column(m)
        if column in frame.columns:
            if m not in modalities:
                raise ValueError(
                    f"{path}: column {column} names modality {m!r}, not one of {list(modalities)}"
                )
            series.append(pl.Series(column, parsed(column), dtype=pl.List(pl.Float64)))
    return series


def read_manifest(
    path: str | Path,
    modalities: Sequence[str],
    classes: Sequence[str],
    label_column: str = "label",
    task: str = "subtype",
) -> pl.DataFrame:
    """Manifest rows as cohort columns (``sample_id``, ``patient_id``, ``y_<task>``, ``has_<m>``,
    ``<m>_path``, the ROI columns and the other manifest columns). Raises ``ValueError`` naming the
    file and patient."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.all().fill_null(""))
    required = ["patient_id", label_column, *modalities]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    reserved = [c for c in frame.columns if c in RESERVED or c.startswith(("y_", "has_"))]
    if reserved:
        raise ValueError(f"{path}: column name(s) {reserved} are reserved for the cohort table")
    frame = frame.with_columns(pl.col("patient_id").str.strip_chars())
    empty = frame.with_row_index("line", offset=2).filter(pl.col("patient_id") == "")
    if empty.height:
        raise ValueError(f"{path}: line {empty['line'][0]} has no patient_id")
    dup = frame.filter(pl.col("patient_id").is_duplicated())
    if dup.height:
        raise ValueError(f"{path}: patient {dup['patient_id'][0]!r} is listed more than once")
    label = frame[label_column].str.strip_chars()
    unknown = frame.filter(~label.is_in(list(classes)))
    if unknown.height:
        row = unknown.row(0, named=True)
        raise ValueError(
            f"{path}: patient {row['patient_id']!r} has label {row[label_column]!r}, not one of the "
            f"classes {list(classes)} (datasets.<name>.classes)"
        )
    root = path.parent
    columns = [
        pl.col("patient_id").alias("sample_id"),
        label.replace_strict({c: i for i, c in enumerate(classes)}, return_dtype=pl.Int64).alias(f"y_{task}"),
    ]
    for m in modalities:
        rel = frame[m].str.strip_chars()
        exists = [bool(p) and (root / p).exists() for p in rel.to_list()]
        columns += [
            pl.Series(f"has_{m}", exists, dtype=pl.Boolean),
            pl.when(pl.lit(rel) != "").then(pl.lit(rel)).otherwise(None).alias(f"{m}_path"),
        ]
    rois = _roi_columns(frame, path, modalities)
    roi_sources = {ROI_COLUMN, ROI_RAS_COLUMN, *(roi_voxel_column(m) for m in ROI_MODALITIES)}
    others = [c for c in frame.columns if c not in (*modalities, "patient_id") and c not in roi_sources]
    return frame.select("patient_id", *columns, *others).with_columns(rois)
