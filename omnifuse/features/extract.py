"""Stage 1 entry points: a cohort table + raw files → one feature cache and its extraction report.

``extract(modality, cohort, root, out, options)`` reads the cohort through
:func:`omnifuse.formats.cohort.read_cohort`; the input of sample ``s`` is ``root / s.<modality>_path`` when
``s.has_<modality>`` is true (MIMIC: ``cxr_path`` relative to the MIMIC-CXR-JPG root, ``rep_path``
relative to the reports root; manifest cohorts: ``ct_path``, ``pet_path``, ``rep_path`` relative to the
manifest's folder). The cache has one row per cohort sample, in cohort order (docs/design.md "Feature
cache"); provenance attributes record the encoder, the weights identity, the preprocessing, the
device/precision actually used and the machine (``host_cpu``, ``host_gpu``), the cohort it was built
for (:class:`omnifuse.formats.cohort.CohortRef`) and a digest of the inputs (paths, sizes, modification
times: :mod:`omnifuse.features.inputs`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from omnifuse.features import INPUT_MODULES, cxr, rep, volume
from omnifuse.features.engine import EngineOptions, Sample, run_extraction
from omnifuse.features.inputs import inputs_digest as keyed_inputs_digest
from omnifuse.features.inputs import with_keys
from omnifuse.features.options import ExtractOptions
from omnifuse.features.runtime import auto_workers, cpu_capability, resolve_runtime, set_threads
from omnifuse.formats.cohort import cohort_ref, read_cohort
from omnifuse.hostinfo import host_info

# One module per kind of input; each has ``setup(modality, samples, options, runtime) -> Setup``.
MODALITY_MODULES = {"cxr": cxr, "rep": rep, "ct": volume, "pet": volume}
EXTRACTED_MODALITIES = tuple(MODALITY_MODULES)
if {m: mod.__name__ for m, mod in MODALITY_MODULES.items()} != INPUT_MODULES:
    raise RuntimeError(
        f"omnifuse.features.INPUT_MODULES is {INPUT_MODULES}, the extractor uses {MODALITY_MODULES}"
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
    out = []
    for sid, has, rel in frame.select("sample_id", f"has_{modality}", column).iter_rows():
        path = root / rel if rel else None
        out.append(Sample(str(sid), path, bool(has), "" if has else f"has_{modality} is false in the cohort"))
    return out


def inputs_digest(samples: list[Sample], root: Path) -> str:
    """sha256 of the (sample id, input path relative to root, available, size and modification time of
    the input) list: a changed cohort, pairing or input file changes it (:mod:`omnifuse.features.inputs`)."""
    return keyed_inputs_digest(with_keys(samples, root))


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
    samples = with_keys(samples_from_cohort(cohort, modality, root), root)
    log.info("%s: reading %s, inputs under %s; %d torch threads", modality, cohort, root, threads)
    attrs: dict[str, Any] = {
        "precision": runtime.precision,
        "device": runtime.device.type,
        "inputs_sha256": inputs_digest(samples, root),
        "source_root": str(root),
        **cohort_ref(cohort).cache_attrs(),
        **host_info(runtime.gpu_name(), torch_threads=threads, cpu_capability=cpu_capability()),
        "torch_version": str(torch.__version__),
    }
    module_setup = MODALITY_MODULES[modality].setup(modality, samples, opts, runtime)
    attrs.update(module_setup.attrs)
    engine = EngineOptions(
        batch_size=opts.batch_size,
        num_workers=workers,
        shard_size=opts.shard_size,
        dtype=opts.dtype,
        max_bad_fraction=opts.max_bad_fraction,
        progress=opts.progress,
    )
    seq_len, dim = module_setup.seq_len, module_setup.dim
    summary = run_extraction(
        modality, samples, module_setup.reader, module_setup.encoder, seq_len, dim, attrs, out, report,
        runtime, engine, module_setup.batch_rows,
    )  # fmt: skip
    return {**summary, "seq_len": seq_len, "dim": dim, "options": json.loads(json.dumps(asdict(opts)))}
