"""The GPU code paths: chest X-ray JPEGs decoded in batches (features.cxr.decode: cuda), extraction and
training on CUDA, and bench/gpu_bench.py.

Without a GPU the decode path runs on the CPU (torchvision's libjpeg-turbo in place of nvJPEG: the
same code, block averaging and resize), and the tests marked ``cuda`` skip."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from omnifuse.cli import build_parser
from omnifuse.features import gpu_decode
from omnifuse.features.cxr import CxrEncoder, setup
from omnifuse.features.engine import EngineOptions, PartialBatch, Sample, run_extraction
from omnifuse.features.extract import ExtractOptions, extract
from omnifuse.features.gpu_decode import (
    MAX_GREY_DIFFERENCE,
    EncodedJpeg,
    GpuJpegReader,
    draft_factor,
    gpu_decodable,
    jpeg_header,
)
from omnifuse.features.images import load_grey_image
from omnifuse.features.resnet import ImageEncoder, build_resnet34
from omnifuse.features.runtime import resolve_runtime
from omnifuse.formats.cache import read_cache
from omnifuse.workflow.features import feature_options
from tests.helpers import REPO, make_mimic, mimic_cohort, validate_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FAST = ExtractOptions(device="cpu", precision="fp32", image_size=32, num_workers=0, shard_size=8, threads=1)


def film(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A smooth grey image with structure and some grain (like an upscaled radiograph)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / max(rows, cols)
    img = 128 + 60 * np.sin(9 * x + 3 * seed) * np.cos(7 * y) + 30 * (x - y) + rng.normal(0, 3, (rows, cols))
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray, fmt: str = "JPEG", mode: str = "L", **kw) -> Path:
    im = Image.fromarray(image)
    if mode != "L":
        im = im.convert(mode)
    im.save(path, format=fmt, **kw)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """JPEGs the GPU path decodes (grey at several draft factors, colour, progressive) and files it
    leaves to the CPU path (PNG, 16-bit PNG, CMYK JPEG)."""
    root = tmp_path_factory.mktemp("images")
    grey = film(612, 508)
    wide = film(300, 700, seed=1)
    colour = np.stack([film(400, 330, seed=2), film(400, 330, seed=3), film(400, 330, seed=4)], -1)
    return {
        "grey": save(root / "grey.jpg", grey, quality=95),
        "small": save(root / "small.jpg", film(80, 70, seed=5), quality=90),
        "wide": save(root / "wide.jpg", wide, quality=95),
        "progressive": save(root / "progressive.jpg", grey, quality=90, progressive=True),
        "colour": save(root / "colour.jpg", colour, quality=92),
        "png": save(root / "grey.png", wide, fmt="PNG"),
        "png16": save(root / "grey16.png", (wide.astype(np.uint16) * 200), fmt="PNG"),
        "cmyk": save(root / "cmyk.jpg", colour, mode="CMYK", quality=90),
    }


def decoded(paths: list[Path], size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the GPU path's batch on ``device``, moved to the CPU; the CPU path's images)."""
    reader = GpuJpegReader(size, device)
    batch = reader.collate([reader.load(p).payload for p in paths])
    if isinstance(batch, PartialBatch):  # some decoded on the CPU instead (noted), none failed
        assert not batch.failed, batch.failed
        batch = batch.batch
    assert isinstance(batch, torch.Tensor) and batch.device.type == torch.device(device).type
    ref = torch.stack([torch.from_numpy(load_grey_image(p, size)).unsqueeze(0) for p in paths])
    return batch.cpu(), ref


def assert_close_images(got: torch.Tensor, ref: torch.Tensor) -> None:
    diff = (got.int() - ref.int()).abs()
    assert got.shape == ref.shape and got.dtype == torch.uint8
    assert int(diff.max()) <= MAX_GREY_DIFFERENCE, int(diff.max())
    assert float(diff.float().mean()) < 0.5


# ---- the JPEG structure check and the draft factor


def test_jpeg_header_reads_the_frame_and_sends_the_rest_to_the_cpu(images):
    grey = images["grey"].read_bytes()
    h = jpeg_header(grey)
    assert (h.height, h.width, h.components, h.precision, h.frame) == (612, 508, 1, 8, 0xC0)
    assert gpu_decodable(h, grey)
    prog = jpeg_header(images["progressive"].read_bytes())
    assert prog.frame == 0xC2 and gpu_decodable(prog, images["progressive"].read_bytes())
    assert jpeg_header(images["colour"].read_bytes()).components == 3
    cmyk = images["cmyk"].read_bytes()
    assert jpeg_header(cmyk).components == 4 and not gpu_decodable(jpeg_header(cmyk), cmyk)
    truncated = grey[: len(grey) * 2 // 3]  # no end-of-image marker after the scan
    assert not gpu_decodable(jpeg_header(truncated), truncated)
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_header(images["png"].read_bytes())
    with pytest.raises(ValueError, match="corrupt JPEG"):
        jpeg_header(grey[:200])  # the header itself cut
    reader = GpuJpegReader(32, "cpu")
    assert isinstance(reader.load(images["grey"]).payload, EncodedJpeg)
    assert reader.load(images["cmyk"]).note.startswith("decoded on the CPU")
    png = reader.load(images["png"])
    assert isinstance(png.payload, torch.Tensor) and png.payload.shape == (1, 32, 32) and not png.note


@pytest.mark.parametrize(
    ("cols", "rows", "size"), [(508, 612, 64), (700, 300, 64), (330, 400, 224), (2544, 3056, 224)]
)
def test_draft_factor_is_pillows(tmp_path, cols, rows, size):
    path = save(tmp_path / "x.jpg", film(rows, cols), quality=80)
    with Image.open(path) as im:
        im.draft("L", (size, size))
        drafted = im.size
    f = draft_factor(rows, cols, size)
    assert drafted == (-(-cols // f), -(-rows // f))


# ---- the decode path on the CPU (the same code as on the GPU)


def test_the_gpu_path_decodes_like_the_cpu_path(images):
    for size in (32, 64, 224):
        got, ref = decoded(list(images.values()), size, "cpu")
        assert_close_images(got, ref)


def test_files_nvjpeg_refuses_are_decided_by_the_cpu_decoder(images, tmp_path, monkeypatch):
    """A batch nvJPEG cannot decode is decoded one by one; a file it refuses goes the CPU path: an
    intact one is decoded there (noted), a damaged one fails with the CPU decoder's reason, and the
    extraction reports each (the engine's PartialBatch)."""
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(silently_damaged(images["grey"].read_bytes()))
    refused = tmp_path / "refused.jpg"
    refused.write_bytes(images["wide"].read_bytes())
    real = gpu_decode.decode_batch

    def refusing(items, device):
        if any(Path(it.path).name in ("damaged.jpg", "refused.jpg") for it in items):
            raise RuntimeError("nvjpeg: bitstream error")
        return real(items, device)

    monkeypatch.setattr(gpu_decode, "decode_batch", refusing)
    paths = [images["grey"], damaged, images["png"], refused, images["small"]]
    samples = [Sample(f"s{k}", p, True, key=str(k)) for k, p in enumerate(paths)]
    model, _ = build_resnet34("none", 0)
    runtime = resolve_runtime("cpu", "fp32")
    encoder = CxrEncoder(ImageEncoder(model, runtime.device, runtime.precision))
    out, report = tmp_path / "cxr.h5", tmp_path / "cxr.report.csv"
    attrs = {"encoder": "resnet34", "weights": "none"}
    summary = run_extraction(
        "cxr", samples, GpuJpegReader(32, "cpu"), encoder, 1, 512, attrs, out, report, runtime,
        EngineOptions(batch_size=8, max_bad_fraction=0.5),
    )  # fmt: skip
    rows = {r.split(",", 1)[0]: r.split(",", 2)[1:] for r in report.read_text().splitlines()[1:]}
    assert summary["counts"] == {"ok": 4, "missing": 0, "failed": 1}
    assert rows["s1"][0] == "failed" and "corrupt JPEG data" in rows["s1"][1]
    assert rows["s3"] == ["ok", "decoded on the CPU (nvJPEG refused it)"]
    cache = read_cache(out, modality="cxr")
    assert cache.present.tolist() == [True, False, True, True, True]
    # the same images through the CPU path give the same features, within the decode tolerance
    cpu_out = tmp_path / "cpu.h5"
    run_extraction(
        "cxr", samples, setup("cxr", [], FAST, runtime).reader, encoder, 1, 512, attrs, cpu_out,
        tmp_path / "cpu.report.csv", runtime, EngineOptions(batch_size=8, max_bad_fraction=0.5),
    )  # fmt: skip
    ref = read_cache(cpu_out, modality="cxr")
    ok = cache.present
    assert_features_close(cache.data[ok], ref.data[ok], tolerance=0.02)


def silently_damaged(data: bytes) -> bytes:
    """``data`` with 16 random bytes in its second half where Pillow still decodes it (the CPU path
    fails it: libjpeg's "extraneous bytes"), its structure intact."""
    rng = np.random.default_rng(0)
    for start in range(len(data) // 2, len(data) - 40, 7):
        damaged = bytearray(data)
        damaged[start : start + 16] = rng.integers(0, 255, 16, dtype=np.uint8).tobytes()
        try:
            with Image.open(io.BytesIO(bytes(damaged))) as im:
                im.draft("L", (32, 32))
                im.load()
        except OSError:
            continue
        return bytes(damaged)
    raise AssertionError("no silently decodable damage found")


def assert_features_close(got: np.ndarray, ref: np.ndarray, tolerance: float) -> None:
    """Per sample: ‖got − ref‖ / ‖ref‖ below ``tolerance``."""
    got, ref = got.astype(np.float64).reshape(len(got), -1), ref.astype(np.float64).reshape(len(ref), -1)
    rel = np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    assert rel.max() < tolerance, rel.max()


def test_decode_cuda_needs_a_gpu_and_is_a_setting(images):
    with pytest.raises(ValueError, match="decode must be"):
        ExtractOptions(decode="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"features\.cxr\.decode is 'cuda'.*runs on the CPU"):
            setup("cxr", [], replace(FAST, decode="cuda"), resolve_runtime("cpu", "fp32"))
    parser = build_parser()
    common = ["--cohort", "c.parquet", "--root", "r", "--out", "o.h5"]
    assert parser.parse_args(["extract", "cxr", *common, "--decode", "cuda"]).decode == "cuda"
    assert parser.parse_args(["extract", "cxr", *common]).decode == "cpu"
    for modality in ("rep", "ct"):
        with pytest.raises(SystemExit):
            parser.parse_args(["extract", modality, *common, "--decode", "cuda"])


def test_the_workflow_passes_decode_to_chest_xray_jobs_only():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.setdefault("features", {}).setdefault("cxr", {})["decode"] = "cuda"
    config = validate_config(config)
    assert feature_options(config, "mimic", "cxr")["decode"] == "cuda"
    assert "decode" not in feature_options(config, "mimic", "rep")
    assert "decode" not in feature_options(config, "lung", "ct")
    del config["features"]["cxr"]["decode"]
    assert feature_options(validate_config(config), "mimic", "cxr")["decode"] == "cpu"  # the default


# ---- CUDA


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    data = make_mimic(root / "mimic", n_stays=30)
    return data, mimic_cohort(data, root)


@cuda
def test_nvjpeg_decodes_like_the_cpu_path(images):
    for size in (32, 224):
        got, ref = decoded(list(images.values()), size, "cuda")
        assert_close_images(got, ref)


@cuda
def test_extraction_on_cuda_matches_the_cpu(hospital, tmp_path):
    data, cohort = hospital
    jpg, txt = data / "mimic-cxr-jpg", data / "mimic-cxr-reports"
    opts = replace(FAST, image_size=64, max_tokens=48, num_workers=1)
    cpu = {m: tmp_path / f"cpu-{m}.h5" for m in ("cxr", "rep")}
    extract("cxr", cohort, jpg, cpu["cxr"], opts)
    extract("rep", cohort, txt, cpu["rep"], opts)
    ref = {m: read_cache(p, modality=m) for m, p in cpu.items()}
    gpu = replace(opts, device="cuda")
    for name, o, modality, root, tolerance in (
        ("cxr-cpu-decode", gpu, "cxr", jpg, 0.01),
        ("cxr-gpu-decode", replace(gpu, decode="cuda"), "cxr", jpg, 0.02),
        ("rep", gpu, "rep", txt, 0.01),
    ):
        out = tmp_path / f"{name}.h5"
        extract(modality, cohort, root, out, o)
        got = read_cache(out, modality=modality)
        assert got.attrs["device"] == "cuda" and got.attrs["host_gpu"]
        np.testing.assert_array_equal(got.present, ref[modality].present)
        ok = got.present
        assert_features_close(got.data[ok], ref[modality].data[ok], tolerance)
        if name == "cxr-gpu-decode":
            assert "nvJPEG" in got.attrs["preprocessing"]


@cuda
def test_training_on_cuda_runs_an_epoch(tmp_path):
    from omnifuse.synth.toy import ToySpec, make_toy_run
    from omnifuse.train import train

    cohort, caches = make_toy_run(tmp_path / "toy", ToySpec(n=120, shapes={"ehr": (8, 12), "cxr": (1, 16)}))
    summary = train(
        cohort, caches, "omnifuse", out_dir=tmp_path / "run", folds=[0],
        overrides=["train.device=cuda", "train.max_epochs=1"],
    )  # fmt: skip
    assert np.isfinite(summary["auroc"]["mean"])
    assert (tmp_path / "run" / "fold0" / "checkpoint.pt").is_file()


# ---- bench/gpu_bench.py and bench/gpu.sh


def bench_module():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def quick_bench(device: str, tmp_path: Path, sections: list[str]) -> dict:
    bench = bench_module()
    args = bench.parser().parse_args(
        ["--device", device, "--quick", "--precisions", "fp32", "--json", str(tmp_path / "b.json"),
         "--sections", *sections, "--budget-s", "300", "--threads", "1"]
    )  # fmt: skip
    data = bench.run(args)
    assert json.loads((tmp_path / "b.json").read_text())["results"] == data["results"]
    assert not data["errors"], data["errors"]
    table = bench.table([data])
    for r in data["results"]:
        assert r["rate"] > 0 and r["name"][:20] in table
    return data


@pytest.mark.slow
def test_the_bench_runs_on_the_cpu_in_quick_mode(tmp_path):
    data = quick_bench("cpu", tmp_path, ["a", "b", "c"])
    names = [r["name"] for r in data["results"]]
    assert any(n.startswith("pipeline") and "decode cpu" in n for n in names)
    assert any(n.startswith("pipeline, BERT") for n in names)
    assert any(n.startswith("5-fold run") for n in names)
    pipelines = [r for r in data["results"] if r["name"].startswith("pipeline")]
    assert all(r["ratio"] > 0 and r["bare_rate"] > 0 for r in pipelines)
    assert data["decode_agreement"]["max_grey_difference"] <= MAX_GREY_DIFFERENCE


@pytest.mark.slow
def test_gpu_sh_runs_its_sections_and_summarizes(tmp_path):
    """The shell script end to end on the CPU (one quick section, no setup)."""
    env = {
        **os.environ, "DEVICE": "cpu", "OMNIFUSE_PYTHON": sys.executable, "OUT": str(tmp_path),
        "BUDGET_S": "200", "SECTIONS": "c", "PYTHONPATH": str(REPO),
    }  # fmt: skip
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--quick", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "gpu_bench.log").read_text()
    assert "== section c: budget" in log and "5-fold run" in log and "== done in" in log
    combined = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert [len(run["results"]) > 0 for run in combined["runs"]] == [True]


@cuda
@pytest.mark.slow
def test_the_bench_runs_on_cuda_in_quick_mode(tmp_path):
    data = quick_bench("cuda", tmp_path, ["a", "b", "c"])
    names = [r["name"] for r in data["results"]]
    assert any("decode cuda" in n for n in names) and any("decode cpu" in n for n in names)
