"""The extraction loop shared by every modality: decode in DataLoader workers, encode, write shards.

Rules:

* Rows follow the cohort table's order. Samples whose cohort says the modality is not available
  are never read: they are written as not present (``missing``).
* Samples are cut into shards of ``shard_size`` rows, fewer when that would hold more than 256 MiB
  of features (:class:`omnifuse.formats.cache.ShardedCacheWriter`);
  batches never cross a shard, so a shard's numbers do not depend on what ran before it, and a
  killed job that restarts skips the completed shards and produces the same cache as one that ran
  straight through (on the same machine and settings). Each shard's report rows are saved next to
  it (``report-NNNNNN.csv`` in the shard folder) before the shard itself, and its status codes go
  into the cache (``status``). Each sample's ``key`` (input path, size, modification time) is
  digested per shard: a shard whose inputs changed since it was written is extracted again.
* Decoding runs in ``num_workers`` DataLoader worker processes (0 = in the main process), so that
  reading and decoding overlap the forward passes. The main process assembles full model batches
  from the decoded samples of a shard (tokenizing / stacking them), so samples dropped at decoding
  do not leave ragged batches; only a shard's last batch is smaller.
* Each sample gets a report row: ``ok`` (with a note, if any), ``missing`` (natural absence: the
  cohort says so, or the input has nothing to encode, e.g. no FINDINGS) or ``failed`` (a bad input:
  unreadable, corrupt or empty file, with the error). Failed samples are written as not present.
* If more than ``max_bad_fraction`` of the samples that should be present failed, nothing is written
  under the cache's name, the shards holding failures are deleted (so a rerun after fixing the inputs
  reads them again) and :class:`ExtractionError` names the first failures. Otherwise the report CSV
  (``sample_id,status,reason``) is written and the shards are merged into the cache atomically.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from omnifuse.features.runtime import Runtime
from omnifuse.formats.atomic import write_text_atomic
from omnifuse.formats.cache import STATUS, ShardedCacheWriter

log = logging.getLogger("omnifuse")

STATUSES = ("ok", "missing", "failed")
MAX_SHARD_BYTES = 256 * 2**20  # a shard holds at most this much of features (shard_size is capped)
REPORT_COLUMNS = ("sample_id", "status", "reason")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class ExtractionError(ValueError):
    """Too many inputs of a cache could not be read (the message names the first ones)."""


class SampleMissing(Exception):
    """The input exists but has nothing to encode (e.g. no FINDINGS): the modality is missing."""


class BadInput(ValueError):
    """The input cannot be used (e.g. an empty report): counted as a failure."""


@dataclass(frozen=True)
class Loaded:
    """A decoded input: what the modality's encoder batches, and a note for the report."""

    payload: Any
    note: str = ""  # e.g. "IMPRESSION used instead", "48 slices subsampled to 32"


@dataclass(frozen=True)
class PartialBatch:
    """What a reader's ``collate`` returns when it could not batch every sample (e.g. images decoded
    on the GPU in the main process): the batch of the others, and per position in the payload list
    the reason a sample failed or a note for one that was batched."""

    batch: Any
    failed: dict[int, str]
    notes: dict[int, str]


@dataclass
class Setup:
    """What a modality module hands the extraction loop: a reader (decodes one input; picklable, runs in
    DataLoader workers), an encoder (holds the model; runs in the main process), the cache's row shape,
    its provenance attributes, and (volumes) how many samples make one model batch."""

    reader: Any
    encoder: Any
    seq_len: int
    dim: int
    attrs: dict[str, Any]
    batch_rows: int | None = None


@dataclass(frozen=True)
class Sample:
    sample_id: str
    path: Path | None  # absolute input path, None when the cohort has none
    available: bool  # the cohort says the modality is present (has_<modality>)
    absent_reason: str = ""  # why it is not read, when it is not
    key: str = ""  # identity of the input as it is now (path, size, mtime, ROI): a change re-extracts
    roi: Any = None  # region of interest (omnifuse.formats.cohort.Roi) for readers with uses_roi


@dataclass(frozen=True)
class EngineOptions:
    batch_size: int = 32
    num_workers: int = 0
    shard_size: int = 256
    dtype: str = "float16"
    max_bad_fraction: float = 0.01
    progress: bool = False


class _Items(Dataset):
    """``dataset[i]`` = (i, payload or None, status, note) for sample ``i``; never raises."""

    def __init__(self, samples: Sequence[Sample], reader: Any) -> None:
        self.samples, self.reader = samples, reader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, Any, str, str]:
        sample = self.samples[i]
        path = sample.path
        try:
            if path is None:
                raise ValueError("the cohort has no path for it")
            if getattr(self.reader, "uses_roi", False):
                loaded = self.reader.load(path, roi=sample.roi)
            else:
                loaded = self.reader.load(path)
            return i, loaded.payload, "ok", loaded.note
        except SampleMissing as exc:
            return i, None, "missing", str(exc)
        except Exception as exc:  # a bad input, whatever the library raised (its message names the file)
            return i, None, "failed", f"{type(exc).__name__}: {exc}"[:300]


class _Collate:
    """A DataLoader batch as decoded samples ``[(i, payload)]`` plus every sample's status note.

    Model batches are assembled from these in the main process (:func:`run_extraction`), so that
    samples dropped at decoding (no FINDINGS, bad files) do not leave ragged model batches."""

    def __call__(self, items: list[tuple[int, Any, str, str]]) -> tuple[list[tuple[int, Any]], list[tuple]]:
        ok = [(i, p) for i, p, status, _ in items if status == "ok"]
        notes = [(i, status, note) for i, _, status, note in items]
        return ok, notes


def _report_text(rows: Sequence[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def _read_report(path: Path) -> list[tuple[str, str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [tuple(r) for r in csv.reader(f)][1:]  # type: ignore[misc]


def run_extraction(
    modality: str,
    samples: Sequence[Sample],
    reader: Any,
    encoder: Callable[[Any], tuple[np.ndarray, np.ndarray]],
    seq_len: int,
    dim: int,
    attrs: dict[str, Any],
    out: str | Path,
    report: str | Path,
    runtime: Runtime,
    options: EngineOptions,
    batch_rows: int | None = None,
) -> dict[str, Any]:
    """Extract ``samples`` into the cache ``out`` and the report CSV ``report``; returns counts.

    ``batch_rows``: samples per DataLoader batch (default ``options.batch_size``)."""
    out, report = Path(out), Path(report)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    ids = [s.sample_id for s in samples]
    row_bytes = seq_len * dim * np.dtype(options.dtype).itemsize
    shard_size = max(1, min(options.shard_size, MAX_SHARD_BYTES // row_bytes))
    writer = ShardedCacheWriter(
        out, modality, ids, seq_len=seq_len, dim=dim, attrs=attrs, dtype=options.dtype, shard_size=shard_size,
        input_keys=[s.key for s in samples],
    )  # fmt: skip
    shards = list(writer.shards())
    pending = writer.pending()
    per_batch = max(1, batch_rows or options.batch_size)
    n_available = sum(s.available for s in samples)
    log.info(
        "%s: %d samples (%d available), %d of %d shards to extract; %s; %d DataLoader workers",
        modality, len(samples), n_available, len(pending), len(shards), runtime.describe(),
        options.num_workers,
    )  # fmt: skip

    buffers: dict[int, dict[str, Any]] = {}
    batches: list[list[int]] = []
    batch_shard: list[int] = []
    for shard in pending:
        buf: dict[str, Any] = {"rows": {}, "todo": 0}  # feature arrays: allocated when first needed
        wanted = []
        for i in range(shard.start, shard.stop):
            s = samples[i]
            if s.available and s.path is not None:
                wanted.append(i)
            elif s.available:
                buf["rows"][i] = (
                    s.sample_id,
                    "failed",
                    f"has_{modality} is true but the cohort gives no path",
                )
            else:
                buf["rows"][i] = (s.sample_id, "missing", s.absent_reason or f"has_{modality} is false")
        for k in range(0, len(wanted), per_batch):
            batches.append(wanted[k : k + per_batch])
            batch_shard.append(shard.index)
            buf["todo"] += 1
        buffers[shard.index] = buf

    def arrays(shard_index: int) -> dict[str, Any]:
        buf = buffers[shard_index]
        if "data" not in buf:
            n = shards[shard_index].stop - shards[shard_index].start
            buf["data"] = np.zeros((n, seq_len, dim), dtype=options.dtype)
            buf["mask"] = np.zeros((n, seq_len), dtype=bool)
            buf["present"] = np.zeros(n, dtype=bool)
        return buf

    def finish(shard_index: int) -> None:
        shard = shards[shard_index]
        buf = arrays(shard_index)
        rows = [buf["rows"][i] for i in range(shard.start, shard.stop)]
        write_text_atomic(writer.dir / f"report-{shard.index:06d}.csv", _report_text(rows))
        status = np.asarray([STATUS[r[1]] for r in rows], dtype=np.uint8)
        writer.write(shard, buf["data"], buf["mask"], buf["present"], status)
        del buffers[shard_index]

    for shard in pending:
        if buffers[shard.index]["todo"] == 0:
            finish(shard.index)

    n_encoded = 0
    timing = {"waiting for input": 0.0, "encoding": 0.0, "writing shards": 0.0}
    if batches:
        loader = DataLoader(
            _Items(samples, reader),
            batch_sampler=batches,
            num_workers=options.num_workers,
            collate_fn=_Collate(),
            pin_memory=runtime.device.type == "cuda",
            persistent_workers=False,
        )
        bar = tqdm(total=len(batches), desc=f"extract {modality}", disable=not options.progress, unit="batch")
        batches_in = iter(loader)
        with runtime.inference():
            for shard_index in batch_shard:
                t_wait = time.perf_counter()
                ok, notes = next(batches_in)
                t_encode = time.perf_counter()
                timing["waiting for input"] += t_encode - t_wait
                buf, start = arrays(shard_index), shards[shard_index].start
                for i, status, note in notes:
                    buf["rows"][i] = (samples[i].sample_id, status, note)
                queue = buf.setdefault("queue", [])
                queue += ok
                buf["todo"] -= 1
                # full model batches as decoded samples arrive; the shard's remainder at its end
                while queue and (len(queue) >= per_batch or buf["todo"] == 0):
                    take, queue[:] = queue[:per_batch], queue[per_batch:]
                    try:
                        batch = reader.collate([payload for _, payload in take])
                    except Exception as exc:  # a batch-level failure (e.g. the tokenizer) fails its samples
                        reason = f"{type(exc).__name__}: {exc}"[:300]
                        for i, _ in take:
                            buf["rows"][i] = (samples[i].sample_id, "failed", reason)
                        continue
                    if isinstance(batch, PartialBatch):
                        for k, why in {**batch.notes, **batch.failed}.items():
                            i, status = take[k][0], "failed" if k in batch.failed else "ok"
                            buf["rows"][i] = (samples[i].sample_id, status, why)
                        take = [t for k, t in enumerate(take) if k not in batch.failed]
                        batch = batch.batch
                        if not take:
                            continue
                    data, mask = encoder(batch)
                    rows = np.asarray([i for i, _ in take]) - start
                    buf["data"][rows], buf["mask"][rows], buf["present"][rows] = data, mask, True
                    n_encoded += len(take)
                t_write = time.perf_counter()
                timing["encoding"] += t_write - t_encode
                if buf["todo"] == 0:
                    finish(shard_index)
                timing["writing shards"] += time.perf_counter() - t_write
                bar.update(1)
        del batches_in  # shuts the workers down now (their CPU time is then counted)
        bar.close()

    rows: list[tuple[str, str, str]] = []
    for shard in shards:
        rows += _read_report(writer.dir / f"report-{shard.index:06d}.csv")
    counts = {status: sum(r[1] == status for r in rows) for status in STATUSES}
    failed = [r for r in rows if r[1] == "failed"]
    fraction = len(failed) / n_available if n_available else 0.0
    write_text_atomic(report, _report_text(rows))
    if failed and fraction > options.max_bad_fraction:
        bad_ids = {r[0] for r in failed}
        for shard in shards:
            if bad_ids & set(shard.ids):
                writer._shard_path(shard.index).unlink(missing_ok=True)
        first = "; ".join(f"{sid}: {reason}" for sid, _, reason in failed[:5])
        raise ExtractionError(
            f"{modality}: {len(failed)} of {n_available} available samples ({fraction:.1%}) could not be "
            f"read, more than max_bad_fraction {options.max_bad_fraction:.1%}; first failures: {first}. "
            f"Full list in {report}. Nothing was written to {out}; fix the inputs (or raise "
            "max_bad_fraction) and rerun: only the shards with failures are extracted again."
        )
    writer.finalize()
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    log.info(
        "%s: wrote %s (%d ok, %d missing, %d failed) and %s in %.1f s (%.1f samples/s encoded)",
        modality, out, counts["ok"], counts["missing"], counts["failed"], report, elapsed,
        n_encoded / elapsed if elapsed > 0 else 0.0,
    )  # fmt: skip
    log.info(
        "%s: time spent %s (waiting for input means decoding did not keep up with the model)",
        modality, ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()),
    )  # fmt: skip
    if failed:
        log.warning("%s: %d failed input(s), e.g. %s: %s", modality, len(failed), failed[0][0], failed[0][2])
    return {"counts": counts, "seconds": elapsed, "cpu_seconds": cpu, "encoded": n_encoded, "timing": timing}
