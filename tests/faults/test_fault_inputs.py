"""Fault injection, raw inputs: truncated EHR tables and event files, incomplete DICOM series, binary
"reports", damaged JPEGs and inputs replaced inside a finished shard. Each ends in one line naming the
file (exit 2) or in a failed extraction naming the sample and the reason (exit 3), with nothing under
the final name; or, where an option allows it, in a recorded degradation."""

from __future__ import annotations

import io
import shutil

import numpy as np
import polars as pl
import pydicom
import pytest
from PIL import Image

from omnifuse.features.extract import ExtractOptions, extract
from omnifuse.formats.cache import ShardedCacheWriter, read_cache
from tests.faults.common import assert_fails, run_cli, truncate
from tests.helpers import lung_cohort, make_lung, make_mimic, mimic_cohort, mini_hospital, shared_data

FAST = ExtractOptions(device="cpu", precision="fp32", image_size=32, num_workers=0, shard_size=4, threads=1)
EXTRACT = ["--device", "cpu", "--precision", "fp32", "--num-workers", "0", "--threads", "1"]


def report_rows(path) -> dict[str, tuple[str, str]]:
    frame = pl.read_csv(path, infer_schema_length=0).fill_null("")
    return {sid: (status, reason) for sid, status, reason in frame.iter_rows()}


# ---- EHR tables and event files


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    root = tmp_path_factory.mktemp("ehr")
    src = mini_hospital(root / "mimic-iv")
    events = root / "events.parquet"
    assert run_cli_plain(["ehr", "extract", "--source", src, "--out", events]) == 0
    return root, src, events


def run_cli_plain(args) -> int:
    from omnifuse.cli import main

    return main([str(a) for a in args])


def cohort_args(src, out, events=None):
    return ["cohort", "--dataset", "mimic", "--kind", "mimic", "--task", "ihm", "--modalities", "ehr",
            "--ehr-path", src, "--n-folds", "2", "--out", out,
            *(["--ehr-events", events] if events else [])]  # fmt: skip


@pytest.mark.parametrize("table", ["icu/chartevents.csv.gz", "icu/icustays.csv.gz"])
def test_truncated_gzip_tables_are_named(hospital, tmp_path, caplog, table):
    _, src, _ = hospital
    copy = tmp_path / "mimic-iv"
    shutil.copytree(src, copy)
    truncate(copy / table)
    events = tmp_path / "events.parquet"
    assert_fails(["ehr", "extract", "--source", copy, "--out", events], caplog, copy / table,
                 absent=[events, tmp_path / "events.json"])  # fmt: skip
    cohort = tmp_path / "ihm.parquet"
    assert_fails(cohort_args(copy, cohort), caplog, copy / table, absent=[cohort])


def test_truncated_events_parquet_is_named(hospital, tmp_path, caplog):
    _, src, events = hospital
    damaged = tmp_path / "events.parquet"
    shutil.copy(events, damaged)
    shutil.copy(events.with_suffix(".json"), damaged.with_suffix(".json"))
    cohort = tmp_path / "ihm.parquet"
    assert run_cli_plain(cohort_args(src, cohort, events)) == 0
    truncate(damaged)
    cache = tmp_path / "ehr.h5"
    args = ["ehr", "features", "--cohort", cohort, "--events", damaged, "--out", cache]
    assert_fails(args, caplog, damaged, "truncated or damaged", absent=[cache])
    again = tmp_path / "again.parquet"
    assert_fails(cohort_args(src, again, damaged), caplog, damaged, absent=[again])


def test_truncated_meds_parquet_is_named(tmp_path, caplog):
    meds = tmp_path / "meds.parquet"
    shutil.copy(shared_data("mimic-iv-demo-meds", "mimic_iv_demo_meds_events.parquet"), meds)
    truncate(meds)
    events = tmp_path / "events.parquet"
    assert_fails(["ehr", "extract", "--source", meds, "--format", "meds", "--out", events], caplog, meds,
                 absent=[events])  # fmt: skip


# ---- DICOM series


@pytest.fixture(scope="module")
def lung_dicom(tmp_path_factory):
    root = tmp_path_factory.mktemp("lung")
    data = make_lung(root / "lung", n_patients=3, dicom=True, manifest_images="dicom")
    return data, lung_cohort(data, root)


def ct_args(cohort, root, out, *extra):
    return ["extract", "ct", "--cohort", cohort, "--root", root, "--out", out, *EXTRACT, "--image-size", "32",
            "--max-bad-fraction", "0", *extra]  # fmt: skip


def damaged_series(lung_dicom, tmp_path, damage):
    data, cohort = lung_dicom
    copy = tmp_path / "lung"
    shutil.copytree(data, copy)
    sid, rel = pl.read_parquet(cohort).filter(pl.col("has_ct")).select("sample_id", "ct_path").row(0)
    files = sorted((copy / rel).glob("*.dcm"))
    middle = files[len(files) // 2]
    if damage == "missing slice":
        middle.unlink()
    else:
        ds = pydicom.dcmread(middle)
        del ds.PixelData
        ds.save_as(middle)
    return copy, cohort, sid, middle


@pytest.mark.parametrize("damage", ["missing slice", "slice without pixel data"])
def test_incomplete_dicom_series_fail_or_are_recorded(lung_dicom, tmp_path, caplog, damage):
    root, cohort, sid, _ = damaged_series(lung_dicom, tmp_path, damage)
    out = tmp_path / "ct.h5"
    word = "missing between" if damage == "missing slice" else "without pixel data"
    assert_fails(ct_args(cohort, root, out), caplog, sid, word, status=3, absent=[out])  # before: ok
    status, reason = report_rows(tmp_path / "ct.report.csv")[sid]
    assert status == "failed" and "incomplete DICOM series" in reason
    allowed = tmp_path / "allowed.h5"
    assert run_cli(ct_args(cohort, root, allowed, "--allow-missing-slices"), caplog)[0] == 0
    status, reason = report_rows(tmp_path / "allowed.report.csv")[sid]
    assert status == "ok" and reason.startswith("1 slice(s) missing"), reason
    assert read_cache(allowed).attrs["preprocessing"].count('"allow_missing_slices": true') == 1


# ---- reports and images


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    data = make_mimic(root / "mimic", n_stays=16)
    return data, mimic_cohort(data, root)


def binary_report() -> bytes:
    """Bytes that decode as cp1252 (none of its five undefined bytes) but are not text."""
    raw = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8)
    return b"FINDINGS: " + raw[~np.isin(raw, [0x81, 0x8D, 0x8F, 0x90, 0x9D])].tobytes()


@pytest.mark.parametrize("section", ["whole", "findings"])
def test_binary_reports_fail_in_either_section_mode(mimic, tmp_path, caplog, section):
    data, cohort = mimic
    reports = tmp_path / "reports"
    shutil.copytree(data / "mimic-cxr-reports", reports)
    sid, rel = pl.read_parquet(cohort).filter(pl.col("has_rep")).select("sample_id", "rep_path").row(0)
    (reports / rel).write_bytes(binary_report())
    out = tmp_path / "rep.h5"
    args = ["extract", "rep", "--cohort", cohort, "--root", reports, "--out", out, *EXTRACT, "--max-tokens",
            "16", "--section", section, "--max-bad-fraction", "0"]  # fmt: skip
    assert_fails(args, caplog, sid, "not text", status=3, absent=[out])  # before: ok / missing
    status, reason = report_rows(tmp_path / "rep.report.csv")[sid]
    assert status == "failed" and "control or non-printing" in reason


def pillow_decodes(data: bytes) -> bool:
    """What the reader did before: Pillow's draft-mode decode (which ignores libjpeg's warnings)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", (32, 32))
            im.load()
        return True
    except OSError:
        return False


def silently_damaged(data: bytes) -> bytes:
    """``data`` with 16 random bytes in its second half, placed where Pillow still decodes it."""
    rng = np.random.default_rng(0)
    for start in range(len(data) // 2, len(data) - 40, 7):
        damaged = bytearray(data)
        damaged[start : start + 16] = rng.integers(0, 255, 16, dtype=np.uint8).tobytes()
        if pillow_decodes(bytes(damaged)):
            return bytes(damaged)
    raise AssertionError("no silently decodable damage found")


def test_a_jpeg_with_a_damaged_region_fails(mimic, tmp_path, caplog):
    data, cohort = mimic
    jpg = tmp_path / "jpg"
    shutil.copytree(data / "mimic-cxr-jpg", jpg)
    sid, rel = pl.read_parquet(cohort).filter(pl.col("has_cxr")).select("sample_id", "cxr_path").row(0)
    (jpg / rel).write_bytes(silently_damaged((jpg / rel).read_bytes()))  # before: decoded, ok
    out = tmp_path / "cxr.h5"
    args = ["extract", "cxr", "--cohort", cohort, "--root", jpg, "--out", out, *EXTRACT, "--image-size", "32",
            "--max-bad-fraction", "0"]  # fmt: skip
    assert_fails(args, caplog, sid, "corrupt JPEG data", status=3, absent=[out])


# ---- resume with changed inputs


def test_an_input_replaced_inside_a_finished_shard_is_extracted_again(mimic, tmp_path, monkeypatch):
    data, cohort = mimic
    jpg = tmp_path / "jpg"
    shutil.copytree(data / "mimic-cxr-jpg", jpg)
    frame = pl.read_parquet(cohort)
    rows = frame.with_row_index().filter(pl.col("has_cxr") & (pl.col("index") < FAST.shard_size))
    sid, rel = rows.select("sample_id", "cxr_path").row(0)  # in shard 0
    donor = frame.filter(pl.col("has_cxr") & (pl.col("sample_id") != sid))["cxr_path"][0]

    real_write = ShardedCacheWriter.write
    written: list[int] = []

    def dying_write(self, shard, *args):
        if len(written) == 2:
            raise KeyboardInterrupt  # killed after two shards
        written.append(shard.index)
        real_write(self, shard, *args)

    monkeypatch.setattr(ShardedCacheWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        extract("cxr", cohort, jpg, tmp_path / "cxr.h5", FAST)
    monkeypatch.setattr(ShardedCacheWriter, "write", real_write)
    shutil.copy(jpg / donor, jpg / rel)  # "fix the inputs ... rerun": shard 0 is finished already
    extract("cxr", cohort, jpg, tmp_path / "cxr.h5", FAST)
    extract("cxr", cohort, jpg, tmp_path / "fresh.h5", FAST)
    resumed, fresh = read_cache(tmp_path / "cxr.h5"), read_cache(tmp_path / "fresh.h5")
    np.testing.assert_array_equal(resumed.data, fresh.data)  # before: the old image's features
    assert resumed.attrs["inputs_sha256"] == fresh.attrs["inputs_sha256"]
