"""Stage 1 entry points: a cohort table + raw files → one feature cache and its extraction report.

``extract(modality, cohort, root, out, options)`` reads the cohort through
:func:`omnifuse.cohort.read_cohort`; the input of sample ``s`` is ``root / s.<modality>_path`` when
``s.has_<modality>`` is true (MIMIC: ``cxr_path`` relative to the MIMIC-CXR-JPG root, ``rep_path``
relative to the reports root; manifest cohorts: ``ct_path``, ``pet_path``, ``rep_path`` relative to the
manifest's folder). CT and PET samples carry the cohort's region of interest, when it has one
(``<modality>_roi_vox``, else ``roi_lps_mm``; see :mod:`omnifuse.cohort`), for ``crop = "roi"``. The
cache has one row per cohort sample, in cohort order (DESIGN.md "Feature cache"); provenance attributes
record the encoder, the weights identity, the preprocessing (the crop included), the device/precision
actually used and a digest of the inputs list (ROIs included).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torchvision

from omnifuse.cohort import ROI_COLUMN, read_cohort, roi_voxel_column
from omnifuse.features.engine import EngineOptions, Sample, run_extraction
from omnifuse.features.modalities import (
    EXTRACTED_MODALITIES,
    VOLUME_MODALITIES,
    CxrEncoder,
    CxrReader,
    ReportEncoder,
    ReportReader,
    VolumeEncoder,
    VolumeReader,
)
from omnifuse.features.options import ExtractOptions
from omnifuse.features.resnet import IMAGENET_MEAN, IMAGENET_STD, ImageEncoder, build_resnet34
from omnifuse.features.runtime import auto_workers, resolve_runtime, set_threads
from omnifuse.features.text_model import (
    TextEncoder,
    WindowPlanner,
    load_text_model,
    load_tokenizer,
    model_positions,
)
from omnifuse.features.volumes import (
    Roi,
    dicom_slice_count,
    dicom_slice_spacing,
    is_nifti,
    nifti_slice_count,
    nifti_slice_spacing,
    selected_count,
)

log = logging.getLogger("omnifuse")


def samples_from_cohort(cohort: str | Path, modality: str, root: str | Path) -> list[Sample]:
    """The cohort's samples with the absolute input path of ``modality`` (see the module docstring)."""
    frame, meta = read_cohort(cohort)
    if modality not in meta.modalities:
        raise ValueError(
            f"{cohort}: the cohort has no modality {modality!r} (it has {list(meta.modalities)})"
        )
    column = f"{modality}_path"
    if column not in frame.columns:
        raise ValueError(f"{cohort}: no column {column!r} with the {modality} inputs")
    root = Path(root)
    rois: list[Roi | None] = [None] * frame.height
    if modality in VOLUME_MODALITIES:
        for space, col in (("lps_mm", ROI_COLUMN), ("voxel", roi_voxel_column(modality))):
            if col in frame.columns:  # the voxel ROI of the modality, when given, wins
                for i, box in enumerate(frame[col].to_list()):
                    if box is not None:
                        rois[i] = Roi(space, tuple(box), col)
    out = []
    rows = frame.select("sample_id", f"has_{modality}", column).iter_rows()
    for (sid, has, rel), roi in zip(rows, rois, strict=True):
        path = root / rel if rel else None
        reason = "" if has else f"has_{modality} is false in the cohort"
        out.append(Sample(str(sid), path, bool(has), reason, roi))
    return out


def inputs_digest(samples: list[Sample], root: Path) -> str:
    """sha256 of the (sample id, input path relative to root, available) list: a changed cohort or
    pairing invalidates the shards of an interrupted extraction."""
    digest = hashlib.sha256()
    for s in samples:
        rel = (
            str(s.path.relative_to(root))
            if s.path is not None and s.path.is_relative_to(root)
            else str(s.path)
        )
        roi = f"\0{s.roi.space}:{','.join(map(repr, s.roi.box))}" if s.roi is not None else ""
        digest.update(f"{s.sample_id}\0{rel}\0{int(s.available)}{roi}\n".encode())
    return digest.hexdigest()


def _volume_seq_len(samples: list[Sample], opts: ExtractOptions) -> int:
    """Rows per volume: the largest selected slice count among the available inputs (headers only;
    with a crop, the crop's slices: ``2 * round(half-width / slice spacing) + 1``)."""
    longest = 1
    for s in samples:
        if not (s.available and s.path is not None):
            continue
        try:
            if s.path.is_dir():
                count = dicom_slice_count(s.path)
                spacing = dicom_slice_spacing(s.path) if opts.crop == "roi" and s.roi else None
            elif is_nifti(s.path):
                count = nifti_slice_count(s.path)
                spacing = nifti_slice_spacing(s.path) if opts.crop == "roi" and s.roi else None
            else:
                continue
        except Exception:  # unreadable: it fails (and is reported) when decoded
            continue
        if spacing:
            count = 2 * round(opts.crop_half_width_mm / spacing) + 1
        if count > 0:
            longest = max(longest, selected_count(count, opts.slice_mode, opts.slice_n, opts.max_slices))
    return longest


def _crop_attrs(opts: ExtractOptions, samples: list[Sample]) -> dict[str, Any]:
    if opts.crop == "none":
        return {"mode": "none"}
    with_roi = sum(1 for s in samples if s.available and s.roi is not None)
    return {
        "mode": "roi",
        "half_width_mm": opts.crop_half_width_mm,
        "fallback": opts.crop_fallback,
        "roi_columns": f"<modality>_roi_vox (voxel, NIfTI as stored), else {ROI_COLUMN} (LPS mm)",
        "grid": "2*round(half_width/spacing)+1 voxels per axis centred on the voxel nearest to the ROI "
        "centre; outside the volume: the volume minimum",
        "samples_with_roi": with_roi,
    }


def _image_attrs(opts: ExtractOptions) -> dict[str, Any]:
    return {
        "size": opts.image_size,
        "resize": "bilinear, antialiased, to size x size (aspect ratio not kept)",
        "channels": "grey replicated to 3",
        "batchnorm": "folded into the convolutions",
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    }


def extract(
    modality: str,
    cohort: str | Path,
    root: str | Path,
    out: str | Path,
    opts: ExtractOptions,
    report: str | Path | None = None,
) -> dict[str, Any]:
    """Build the ``modality`` cache ``out`` (and its report, default ``<out stem>.report.csv``)."""
    if modality not in EXTRACTED_MODALITIES:
        raise ValueError(f"modality must be one of {EXTRACTED_MODALITIES}, got {modality!r}")
    out, root = Path(out), Path(root)
    report = Path(report) if report else out.with_name(out.name.removesuffix(".h5") + ".report.csv")
    if not root.is_dir():
        raise FileNotFoundError(f"{modality} input root not found: {root}")
    runtime = resolve_runtime(opts.device, opts.precision)
    threads = set_threads(opts.threads)
    workers = opts.num_workers if opts.num_workers >= 0 else auto_workers(runtime.device.type, threads)
    samples = samples_from_cohort(cohort, modality, root)
    log.info("%s: reading %s, inputs under %s; %d torch threads", modality, cohort, root, threads)
    attrs: dict[str, Any] = {
        "precision": runtime.precision,
        "device": runtime.device.type,
        "inputs_sha256": inputs_digest(samples, root),
        "source_root": str(root),
        "cohort": str(cohort),
        "torch_version": str(torch.__version__),
    }
    batch_rows = None
    if modality == "rep":
        tokenizer, tok_source = load_tokenizer(opts.text_model, opts.tokenizer)
        net, model_attrs = load_text_model(opts.text_model, opts.seed)
        planner = WindowPlanner(
            tokenizer, opts.max_tokens, model_positions(net, tokenizer), opts.window_overlap
        )
        reader: Any = ReportReader(planner, opts.section, opts.fallback, opts.language)
        encoder: Any = ReportEncoder(TextEncoder(net, runtime.device), opts.max_tokens, opts.batch_size)
        import transformers

        attrs.update(model_attrs, transformers_version=str(transformers.__version__))
        attrs["preprocessing"] = {
            "section": opts.section,
            "fallback": opts.fallback,
            "tokenizer": tok_source,
            "max_tokens": opts.max_tokens,
            "model_positions": planner.positions,
            "window_overlap": opts.window_overlap,
            "whitespace": "collapsed",
        }
        seq_len, dim = opts.max_tokens, encoder.dim
    else:
        model, model_attrs = build_resnet34(opts.weights, opts.seed)
        images = ImageEncoder(model, runtime.device, runtime.precision)
        attrs.update(model_attrs, torchvision_version=str(torchvision.__version__))
        if modality == "cxr":
            reader = CxrReader(opts.image_size)
            encoder = CxrEncoder(images)
            attrs["preprocessing"] = {**_image_attrs(opts), "decode": "grey 8-bit (JPEG draft mode)"}
            seq_len, dim = 1, encoder.dim
        else:
            seq_len = _volume_seq_len(samples, opts)
            reader = VolumeReader(
                modality, seq_len, (float(opts.window[0]), float(opts.window[1])), opts.slice_mode,
                opts.slice_n, opts.max_slices, opts.image_size, opts.crop, float(opts.crop_half_width_mm),
                opts.crop_fallback,
            )  # fmt: skip
            encoder = VolumeEncoder(images, seq_len, opts.batch_size)
            attrs["preprocessing"] = {
                **_image_attrs(opts),
                "units": "HU" if modality == "ct" else "SUV (body weight)",
                "window": list(reader.window),
                "slices": {"mode": opts.slice_mode, "n": opts.slice_n, "max": opts.max_slices},
                "crop": _crop_attrs(opts, samples),
                "slice_order": "inferior to superior; rows anterior to posterior; columns right to left",
            }
            dim = encoder.dim
            batch_rows = max(1, opts.batch_size // max(seq_len, 1))
    engine = EngineOptions(
        batch_size=opts.batch_size,
        num_workers=workers,
        shard_size=opts.shard_size,
        dtype=opts.dtype,
        max_bad_fraction=opts.max_bad_fraction,
        progress=opts.progress,
    )
    summary = run_extraction(
        modality, samples, reader, encoder, seq_len, dim, attrs, out, report, runtime, engine, batch_rows
    )
    return {**summary, "seq_len": seq_len, "dim": dim, "options": json.loads(json.dumps(asdict(opts)))}
