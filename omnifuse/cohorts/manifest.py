"""The generic bring-your-own-cohort manifest (e.g. the lung CT/PET/report cohort).

A manifest is a CSV with ``patient_id``, a label column (``datasets.<name>.label_column``) and one
path column per modality (named after the modality: ``ct``, ``pet``, ``rep``, ...), each path relative
to the manifest's folder; an empty cell means the modality is missing. Other columns are kept.

Rules: one row per patient (``sample_id = patient_id``); the label must be one of the configured class
names (its class index becomes ``y_<task>``); ``has_<m>`` is true when the path is non-empty and the file
or folder exists; ``<m>_path`` keeps the manifest's relative path (empty -> null), resolved later
against the manifest's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

RESERVED = ("sample_id", "fold")


def read_manifest(
    path: str | Path,
    modalities: Sequence[str],
    classes: Sequence[str],
    label_column: str = "label",
    task: str = "subtype",
) -> pl.DataFrame:
    """Manifest rows as cohort columns (``sample_id``, ``patient_id``, ``y_<task>``, ``has_<m>``,
    ``<m>_path`` and the other manifest columns). Raises ``ValueError`` naming the file and patient."""
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
    others = [c for c in frame.columns if c not in (*modalities, "patient_id")]
    return frame.select("patient_id", *columns, *others)
