"""Stage 1 throughput on this machine: images/s and reports/s for fp32 and bf16, and the ratio of the
full extraction pipeline (files → DataLoader workers decoding → encoder → HDF5 shards) to the bare
model forward pass on pre-decoded tensors, measured in the same run (goal: ratio >= 0.8, i.e.
decoding and I/O hidden behind compute). Optionally times the extraction of the demo cohorts.

    .venv/bin/python bench/extract_throughput.py                 # ~3-5 min on 2 cores
    .venv/bin/python bench/extract_throughput.py --demo          # + the demo extraction (long)

Images are measured twice: at the demo size (synthetic films, 256 px wide) and at the size of real
MIMIC-CXR-JPG files (about 2500 x 3000 px; the same films upscaled), where JPEG decoding is costly.
Each number is the best of ``--repeats`` runs (the machine is shared and noisy); all of them are
printed. Cohort tables come from the feature tests' builders (every ICU stay; the manifest).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpu_bench import section_texts  # noqa: E402

from omnifuse.features.engine import cpu_seconds  # noqa: E402
from omnifuse.features.extract import ExtractOptions, extract  # noqa: E402
from omnifuse.features.images import load_grey_image  # noqa: E402
from omnifuse.features.resnet import ImageEncoder, build_resnet34  # noqa: E402
from omnifuse.features.runtime import resolve_runtime, set_threads  # noqa: E402
from omnifuse.features.text_model import (  # noqa: E402
    TextEncoder,
    WindowPlanner,
    load_text_model,
    load_tokenizer,
    model_positions,
)
from tests.helpers import lung_cohort, make_lung, make_mimic, mimic_cohort  # noqa: E402


def show(label: str, precision: str, full: list[dict], bare: list[dict]) -> dict:
    """One line per measurement. Wall clock: best rates and the median of the paired ratios (each
    pipeline run against the bare run just before it). CPU time: samples per CPU-second (all threads
    and DataLoader workers), which the other users of a shared machine disturb much less; its ratio
    says how much extra work reading, decoding and writing cost on top of the model."""
    wall = [f["encoded"] / f["seconds"] for f in full]
    cpu = [f["encoded"] / f["cpu_seconds"] for f in full]
    bare_wall, bare_cpu = [b["wall"] for b in bare], [b["cpu"] for b in bare]
    paired = float(np.median([f / b for f, b in zip(wall, bare_wall, strict=True)]))
    cpu_ratio = float(np.median(cpu) / np.median(bare_cpu))
    fastest = full[int(np.argmax(wall))]
    shares = {k: v / fastest["seconds"] for k, v in fastest["timing"].items()}
    print(
        f"{label:26s} {precision}: pipeline {max(wall):6.1f}/s, bare forward {max(bare_wall):6.1f}/s "
        f"(best of {len(wall)}); ratio wall {paired:.2f} (median of pairs), CPU-time {cpu_ratio:.2f}; "
        "pipeline time: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    )
    print(
        f"{'':26s}   runs/s pipeline {[round(x, 1) for x in wall]}, bare {[round(x, 1) for x in bare_wall]}"
    )
    return {"pipeline_wall": wall, "bare_wall": bare_wall, "pipeline_cpu": cpu, "bare_cpu": bare_cpu,
            "paired_wall_ratio": paired, "cpu_ratio": cpu_ratio, "time_shares": shares}  # fmt: skip


def _rates(n: int, t0: float, c0: float) -> dict:
    return {"wall": n / (time.perf_counter() - t0), "cpu": n / (cpu_seconds() - c0)}


def bare_images(paths: list[Path], opts: ExtractOptions) -> dict:
    """Images/s of the encoder alone on tensors decoded beforehand."""
    runtime = resolve_runtime(opts.device, opts.precision)
    model, _ = build_resnet34(opts.weights, opts.seed)
    encoder = ImageEncoder(model, runtime.device, runtime.precision)
    images = torch.stack([torch.from_numpy(load_grey_image(p, opts.image_size)).unsqueeze(0) for p in paths])
    batches = images.split(opts.batch_size)
    with runtime.inference():
        encoder(batches[0])  # warm-up (kernel selection)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for b in batches:
            encoder(b)
        return _rates(len(images), t0, c0)


def bare_reports(paths: list[Path], opts: ExtractOptions) -> dict:
    """Reports/s of the text encoder alone on texts read and tokenized beforehand."""
    runtime = resolve_runtime(opts.device, opts.precision)
    tokenizer, _ = load_tokenizer(opts.text_model, opts.tokenizer)
    net, _ = load_text_model(opts.text_model, opts.seed)
    planner = WindowPlanner(tokenizer, opts.max_tokens, model_positions(net, tokenizer), opts.window_overlap)
    texts = section_texts(paths, opts)
    batches = [planner(texts[i : i + opts.batch_size]) for i in range(0, len(texts), opts.batch_size)]
    encoder = TextEncoder(net, runtime.device)
    with runtime.inference():
        encoder(batches[0], chunk=opts.batch_size)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for b in batches:
            encoder(b, chunk=opts.batch_size)
        return _rates(len(texts), t0, c0)


def pipeline(modality, cohort, root, out: Path, opts: ExtractOptions) -> dict:
    """The whole extraction (read, decode in workers, encode, write shards): its summary."""
    shutil.rmtree(out, ignore_errors=True)
    return extract(modality, cohort, root, out / f"{modality}.h5", opts)


def measure(bare, full, repeats: int) -> tuple[list[dict], list[dict]]:
    """Both measurements, interleaved (bare, pipeline, bare, ...) so that load changes hit both."""
    bares, fulls = [], []
    for _ in range(repeats):
        bares.append(bare())
        fulls.append(full())
    return fulls, bares


def upscale_images(cohort: Path, root: Path, dest: Path, size: tuple[int, int], distinct: int = 16) -> Path:
    """Films at the size of real MIMIC-CXR-JPG files under the cohort's relative paths (``distinct``
    upscaled films, reused in turn: decoding cost is what matters)."""
    sources = pl.read_parquet(cohort)["cxr_path"].drop_nulls().to_list()
    made = []
    for k, rel in enumerate(sources):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if k < distinct:
            with Image.open(root / rel) as im:
                im.convert("L").resize(size, Image.Resampling.BICUBIC).save(target, quality=95)
            made.append(target)
        else:
            shutil.copyfile(made[k % distinct], target)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-stays", type=int, default=300, help="ICU stays of the synthetic hospital")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all CPUs)")
    parser.add_argument("--demo", action="store_true", help="also time the extraction of the demo cohorts")
    parser.add_argument("--demo-root", default=str(REPO / "resources" / "synthetic"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("omnifuse").setLevel(logging.ERROR)  # the random-weights warning, once per run
    threads = set_threads(args.threads)
    results: dict = {"threads": threads, "num_workers": args.num_workers, "cpu_bf16": None}
    print(f"torch {torch.__version__}, {threads} threads, {args.num_workers} DataLoader worker(s)")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mimic = make_mimic(tmp / "mimic", n_stays=args.n_stays)
        cohort = mimic_cohort(mimic, tmp)
        frame = pl.read_parquet(cohort)
        image_paths = [mimic / "mimic-cxr-jpg" / p for p in frame["cxr_path"].drop_nulls()]
        report_paths = [mimic / "mimic-cxr-reports" / p for p in frame["rep_path"].drop_nulls()]
        big = upscale_images(cohort, mimic / "mimic-cxr-jpg", tmp / "big-jpg", (2544, 3056))
        big_paths = [big / p for p in frame["cxr_path"].drop_nulls()]
        print(f"{len(image_paths)} images, {len(report_paths)} reports")
        base = ExtractOptions(
            device="cpu", num_workers=args.num_workers, threads=args.threads, weights="none"
        )
        for precision in ("fp32", "bf16"):
            opts = replace(base, precision=precision)
            if precision == "bf16" and resolve_runtime("cpu", "auto").precision != "bf16":
                print("bf16: not supported on this CPU, skipped")
                continue
            results["cpu_bf16"] = True if precision == "bf16" else results["cpu_bf16"]
            for label, root, paths in (
                ("images (demo size)", mimic / "mimic-cxr-jpg", image_paths),
                ("images (2544x3056 JPEG)", big, big_paths),
            ):
                full, bare = measure(
                    lambda paths=paths, opts=opts: bare_images(paths, opts),
                    lambda root=root, opts=opts: pipeline("cxr", cohort, root, tmp / "cxr", opts),
                    args.repeats,
                )
                results[f"{label} {precision}"] = show(label, precision, full, bare)
            full, bare = measure(
                lambda opts=opts: bare_reports(report_paths, opts),
                lambda opts=opts: pipeline("rep", cohort, mimic / "mimic-cxr-reports", tmp / "rep", opts),
                args.repeats,
            )
            results[f"reports {precision}"] = show("reports (MiniLM, 150 tok)", precision, full, bare)

        if args.demo:
            results["demo"] = time_demo(Path(args.demo_root), tmp, base)
    print(json.dumps(results, default=str))


def time_demo(root: Path, tmp: Path, base: ExtractOptions) -> dict:
    """Wall time of extracting every modality of the demo cohorts with the demo settings
    (config/config.yaml: precision auto, CT/PET slices at 112 px)."""
    opts = replace(base, precision="auto")
    mimic, lung = root / "mimic", root / "lung"
    if not (mimic / "mimic-cxr-jpg").is_dir():
        mimic = make_mimic(tmp / "demo-mimic", n_stays=2000)
    if not (lung / "manifest.csv").is_file():
        lung = make_lung(tmp / "demo-lung", n_patients=300, ct_shape=(96, 96, 48), ct_spacing=(3.5, 3.5, 5.0),
                         pet_shape=(48, 48, 24), pet_spacing=(7.0, 7.0, 10.0))  # fmt: skip
    out = tmp / "demo"
    cohorts = {task: mimic_cohort(mimic, out / task, task) for task in ("ihm", "pheno")}
    cohorts["subtype"] = lung_cohort(lung, out)
    times = {}
    jobs = [
        ("ihm", "cxr", mimic / "mimic-cxr-jpg", opts),
        ("ihm", "rep", mimic / "mimic-cxr-reports", opts),
        ("pheno", "cxr", mimic / "mimic-cxr-jpg", opts),
        ("pheno", "rep", mimic / "mimic-cxr-reports", opts),
        ("subtype", "ct", lung, replace(opts, window=(-1350.0, 150.0), image_size=112)),
        ("subtype", "pet", lung, replace(opts, window=(0.0, 10.0), image_size=112)),
        ("subtype", "rep", lung, replace(opts, text_model="random-bert-zh", tokenizer="cn-clip",
                                         max_tokens=2048, section="whole", language="zh")),
    ]  # fmt: skip
    for task, modality, src, o in jobs:
        t0 = time.perf_counter()
        summary = extract(modality, cohorts[task], src, out / task / f"{modality}.h5", o)
        times[f"{task}/{modality}"] = {"seconds": time.perf_counter() - t0, **summary["counts"]}
        print(f"demo {task}/{modality}: {times[f'{task}/{modality}']['seconds']:.1f} s {summary['counts']}")
    total = sum(v["seconds"] for v in times.values())
    print(f"demo extraction total: {total:.1f} s (no cohort exclusions: an upper bound)")
    return {"jobs": times, "total_seconds": total}


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
