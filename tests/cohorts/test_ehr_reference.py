"""Our vectorised discretizer against a line-by-line port of the reference implementation.

``ReferenceDiscretizer`` ports ``Discretizer.transform`` of mimic3-benchmarks
(mimic3models/preprocessing.py, MIT licence; the loop MedFuse uses) with ``impute_strategy="previous"``,
``start_time="zero"``, ``store_masks=True``. It reads the episode files written by ``omnifuse ehr
export-episodes`` (the benchmark's ``{stay}_timeseries.csv`` format) and must reproduce, row for row,
the cache that ``omnifuse ehr features`` builds from the same hospital, for both tasks and both
time steps. Channel facts come from the reference ``discretizer_config.json`` when ../shared is there.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from omnifuse.cohorts.build import CohortOptions, DatasetSources, build_cohort
from omnifuse.cohorts.ehr.build import build_ehr_cache
from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.events import extract_events_to
from omnifuse.cohorts.ehr.export import export_episodes
from omnifuse.cohorts.ehr.options import DiscretizerOptions, EventOptions
from omnifuse.cohorts.mimic import open_source
from omnifuse.formats.cache import read_cache
from omnifuse.formats.cohort import read_cohort, write_cohort
from omnifuse.synth.mimic import MimicSynthConfig, generate_mimic
from tests.helpers import SHARED_DATA


def reference_config() -> dict:
    path = SHARED_DATA / "mimic3-benchmarks-resources" / "discretizer_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    spec = channel_spec()  # without ../shared: our own definitions (the other test checks them)
    return {
        "id_to_channel": list(spec.names),
        "is_categorical_channel": {v.name: v.categorical for v in spec.variables},
        "possible_values": {v.name: list(v.categories) for v in spec.variables},
        "normal_values": {v.name: v.normal for v in spec.variables},
    }


class ReferenceDiscretizer:
    """mimic3-benchmarks Discretizer (previous-value imputation, zero start time, with masks)."""

    def __init__(self, timestep: float, config: dict) -> None:
        self._id_to_channel = config["id_to_channel"]
        self._channel_to_id = dict(zip(self._id_to_channel, range(len(self._id_to_channel)), strict=True))
        self._is_categorical_channel = config["is_categorical_channel"]
        self._possible_values = config["possible_values"]
        self._normal_values = config["normal_values"]
        self._timestep = timestep

    def transform(self, X, header, end=None):
        eps = 1e-6
        n_channels = len(self._id_to_channel)
        ts = [float(row[0]) for row in X]
        for i in range(len(ts) - 1):
            assert ts[i] < ts[i + 1] + eps
        first_time = 0
        max_hours = max(ts) - first_time if end is None else end - first_time
        n_bins = int(max_hours / self._timestep + 1.0 - eps)
        cur_len = 0
        begin_pos = [0] * n_channels
        end_pos = [0] * n_channels
        for i in range(n_channels):
            channel = self._id_to_channel[i]
            begin_pos[i] = cur_len
            if self._is_categorical_channel[channel]:
                end_pos[i] = begin_pos[i] + len(self._possible_values[channel])
            else:
                end_pos[i] = begin_pos[i] + 1
            cur_len = end_pos[i]
        data = np.zeros(shape=(n_bins, cur_len), dtype=float)
        mask = np.zeros(shape=(n_bins, n_channels), dtype=int)
        original_value = [["" for _ in range(n_channels)] for _ in range(n_bins)]

        def write(data, bin_id, channel, value, begin_pos):
            channel_id = self._channel_to_id[channel]
            if self._is_categorical_channel[channel]:
                category_id = self._possible_values[channel].index(value)
                n_values = len(self._possible_values[channel])
                one_hot = np.zeros((n_values,))
                one_hot[category_id] = 1
                for pos in range(n_values):
                    data[bin_id, begin_pos[channel_id] + pos] = one_hot[pos]
            else:
                data[bin_id, begin_pos[channel_id]] = float(value)

        for row in X:
            t = float(row[0]) - first_time
            if t > max_hours + eps:
                continue
            bin_id = int(t / self._timestep - eps)
            assert 0 <= bin_id < n_bins
            for j in range(1, len(row)):
                if row[j] == "":
                    continue
                channel = header[j]
                channel_id = self._channel_to_id[channel]
                mask[bin_id][channel_id] = 1
                write(data, bin_id, channel, row[j], begin_pos)
                original_value[bin_id][channel_id] = row[j]
        prev_values = [[] for _ in range(len(self._id_to_channel))]
        for bin_id in range(n_bins):
            for channel in self._id_to_channel:
                channel_id = self._channel_to_id[channel]
                if mask[bin_id][channel_id] == 1:
                    prev_values[channel_id].append(original_value[bin_id][channel_id])
                    continue
                if len(prev_values[channel_id]) == 0:
                    imputed_value = self._normal_values[channel]
                else:
                    imputed_value = prev_values[channel_id][-1]
                write(data, bin_id, channel, imputed_value, begin_pos)
        return np.hstack([data, mask.astype(np.float32)])


def read_episode(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    generate_mimic(root / "hospital", MimicSynthConfig(n_stays=40, seed=3, image_columns=64, with_cxr=False))
    return root


@pytest.mark.parametrize(("task", "timestep"), [("ihm", 2.0), ("ihm", 1.0), ("pheno", 2.0)])
def test_cache_equals_the_reference_discretizer_on_exported_episodes(hospital, task, timestep):
    mimic = hospital / "hospital" / "mimic-iv"
    work = hospital / f"{task}-{timestep}"
    work.mkdir()
    episodes = work / "episodes"
    info = export_episodes(mimic, task, episodes, CohortOptions(n_folds=2), EventOptions())
    assert info["exported"] > 5
    extract_events_to(work / "events.parquet", open_source(mimic), EventOptions())
    src = DatasetSources("ref", "mimic", ("ehr",), "mimic-iv", str(mimic))
    frame, meta = build_cohort(src, task, CohortOptions(n_folds=2), work / "events.parquet")
    write_cohort(work / "cohort.parquet", frame, meta)
    build_ehr_cache(work / "cohort.parquet", work / "events.parquet", work / "ehr.h5",
                    DiscretizerOptions(timestep=timestep, max_hours=1000))  # fmt: skip
    cache = read_cache(work / "ehr.h5", "ehr")
    cohort, _ = read_cohort(work / "cohort.parquet")
    rows = {sid: i for i, sid in enumerate(cache.ids)}
    reference = ReferenceDiscretizer(timestep, reference_config())
    listing = {line[0]: line for line in read_episode(episodes / "listfile.csv")[1]}
    compared = 0
    for name, line in listing.items():
        header, X = read_episode(episodes / name)
        assert header[0] == "Hours" and header[1:] == list(channel_spec().names)
        end = 48.0 if task == "ihm" else float(line[1])
        expected = reference.transform(X, header, end=end)
        i = rows[name.removesuffix("_timeseries.csv")]
        steps = int(cache.mask[i].sum())
        assert steps == len(expected), name
        np.testing.assert_allclose(cache.data[i, :steps], expected, rtol=1e-6, atol=1e-5, err_msg=name)
        compared += 1
    assert compared == info["exported"] == int(cohort["has_ehr"].sum())
