"""Cluster submission against a real SLURM controller: scripts/slurm_local.sh starts slurmctld, slurmd and
munge from Debian's packages (installed by `make test` as root) for this module and stops them after it.

The profiles are used the way README "Running on a cluster" tells users to: a copy of
workflow/profiles/slurm (or cluster-generic with its SLURM submit/status/cancel commands) with the site's
partition added. On the tiny config below (the lung demo with CT and PET, 2 folds, Table 4 rows (a) and
(f): 7 jobs up to results/table4.csv) the tests check that every job goes through sbatch (job ids in the
executor's output = the jobs squeue knows), that the outputs equal those of a local run of the same
config, where the per-job logs land, that a job cancelled with scancel mid-run fails the run without
leaving a half-written output and is rerun by the next invocation, and how extraction asks for GPUs: not
at all by default (a cluster without a GPU GRES runs everything), through set-resources to a GPU
partition (a fake GPU GRES) where the user says GPUs exist.

Extraction rules are found by name in the dry run (``features`` or ``features_<modality>``), so the
overlays follow the rule names of the workflow.
"""

from __future__ import annotations

import copy
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest
import yaml

from tests.helpers import REPO, TINY, planned_jobs, write_config

pytestmark = pytest.mark.slow

SLURM_LOCAL = REPO / "scripts" / "slurm_local.sh"
SNAKEFILE = REPO / "workflow" / "Snakefile"
PROFILES = REPO / "workflow" / "profiles"
CLUSTER_DIR = Path(tempfile.gettempdir()) / "omnifuse-slurm"
LOCK = Path(tempfile.gettempdir()) / "omnifuse-slurm.lock"
TARGET = "results/table4.csv"
RUNS = [f"results/lung/runs/subtype/{variant}/ct+pet/complete" for variant in ("omnifuse-a", "omnifuse")]
# the controller's default partition, and the fake GPU node's partition (scripts/slurm_local.sh)
PARTITION, GPU_PARTITION = "main", "gpu"


def cluster_config() -> dict:
    """Every stage up to results/table4.csv, as small as it gets: 7 jobs (generation, cohort, CT and PET
    caches, two training runs, the table). ``features.device`` keeps its default, ``auto``."""
    config = copy.deepcopy(TINY)
    config["synthetic"]["mimic"]["enabled"] = False
    config["synthetic"]["lung"]["options"]["n_patients"] = 16
    config["datasets"] = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]
    config["datasets"]["mimic"]["enabled"] = False
    config["datasets"]["lung"]["modalities"] = ["ct", "pet"]
    config["cohort"] = {"n_folds": 2}
    volume = {"size": 32, "max_slices": 4}
    config["features"] = {"precision": "fp32", "num_workers": 0, "threads": 1, "ct": volume, "pet": volume}
    config["train"] = {"max_epochs": 100, "patience": 100, "cohort_mode": "all"}  # ~1 s folds to catch
    config["encoders"] = {"d": 8, "ehr_hidden": 8, "ehr_layers": 1, "attn_hidden": 4}
    config["methods"] = {"omnifuse": {"cra_hidden": 8, "cra_latent": 4, "k": 2}}
    config["experiments"] = {name: {"enabled": False} for name in ("table2", "table3", "missing", "fig6",
                                                                   "fig7", "fig8")}  # fmt: skip
    config["experiments"]["table4"] = {"targets": ["lung/subtype"], "rows": ["a", "f"]}
    config["report"] = {"dpi": 50}
    return config


# ---------------------------------------------------------------------------------------------------
# the cluster


def _not_installed_reason() -> str | None:
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # the daemons are in sbin
    binaries = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged")
    if all(shutil.which(b, path=path) for b in binaries):
        return None if os.geteuid() == 0 else "the local SLURM cluster's daemons run as root: run as root"
    what = "SLURM (Debian packages slurmctld slurmd slurm-client munge) is not installed"
    if os.geteuid() != 0:
        return f"{what} and installing it needs root (`make test` as root, or scripts/slurm_local.sh install)"
    if not shutil.which("apt-get"):
        return f"{what} and apt-get is not available to install it"
    log = Path(tempfile.gettempdir()) / "omnifuse-slurm-apt.log"
    return f"{what}: `make test` installs it (scripts/slurm_local.sh install; its log: {log})"


class Cluster:
    """The local cluster of scripts/slurm_local.sh: (re)started with or without a fake GPU node."""

    def __init__(self) -> None:
        self.gpus: int | None = None
        self.env = {**os.environ, "OMNIFUSE_SLURM_DIR": str(CLUSTER_DIR),
                    "SLURM_CONF": str(CLUSTER_DIR / "slurm.conf")}  # fmt: skip
        for var in [v for v in self.env if v.startswith(("SLURM_JOB", "SBATCH_", "SRUN_"))]:
            del self.env[var]  # a test session inside a SLURM job must not pass its job's settings on

    def script(self, *args: str) -> str:
        proc = subprocess.run(["bash", str(SLURM_LOCAL), *args], env=self.env, capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"slurm_local.sh {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def ensure(self, gpus: int) -> None:
        if self.gpus != gpus:
            self.script("start", "--gpus", str(gpus))
            self.gpus = gpus

    def command(self, *args: str) -> str:
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def history(self, name: str | None = None) -> dict[str, str]:
        """SLURM job id -> state of every job squeue still knows (MinJobAge is an hour here)."""
        args = ["squeue", "--noheader", "--states=all", "--format=%i|%T"]
        out = self.command(*args, *(["--name", name] if name else []))
        return dict(line.split("|") for line in out.split())

    def job(self, jobid: str) -> dict[str, str]:
        """``scontrol show job``'s fields of one job."""
        out = self.command("scontrol", "--oneliner", "show", "job", jobid)
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def running(self) -> dict[str, str]:
        """SLURM job id -> comment (rule and wildcards) of the running jobs."""
        out = self.command("squeue", "--noheader", "--states=RUNNING", "--format=%i|%k")
        return dict(line.split("|", 1) for line in out.split())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = _not_installed_reason()
    if reason:
        pytest.skip(reason)
    LOCK.touch()
    with LOCK.open() as lock:
        # one local cluster per machine: a concurrent session waits for this one to end
        fcntl.flock(lock, fcntl.LOCK_EX)
        cl = Cluster()
        try:
            try:
                cl.ensure(gpus=0)
            except AssertionError as e:
                if "not replacing" in str(e):  # a system SLURM's config in /etc/slurm: leave it alone
                    pytest.skip(str(e).strip().splitlines()[-1])
                raise
            yield cl
        finally:
            cl.script("stop")


class LocalRun:
    """The same config run locally (``--cores 2``): the reference the cluster runs must reproduce. It
    starts in the background (at a lower priority) while the first cluster run waits on its jobs."""

    def __init__(self, work: Path) -> None:
        self.work = work
        write_config(work, cluster_config())
        # nice: the local run takes the CPU the cluster jobs leave while the executor waits on them
        cmd = ["nice", "-n", "10", sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
               "--cores", "2", TARGET]  # fmt: skip
        self.log = work.parent / "local-run.out"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)

    def result(self) -> Path:
        if self.proc.wait(timeout=900) != 0:
            raise AssertionError(f"the local run failed:\n{self.log.read_text()[-4000:]}")
        return self.work


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Iterator[LocalRun]:
    local = LocalRun(tmp_path_factory.mktemp("local") / "work")
    yield local
    if local.proc.poll() is None:
        local.proc.kill()
        local.proc.wait()


# ---------------------------------------------------------------------------------------------------
# running the workflow as a user does: from the working directory, with a copy of a profile


def profile_copy(tmp: Path, name: str, **settings) -> Path:
    """A copy of workflow/profiles/<name> with site settings merged in (``default-resources`` and
    ``set-resources`` are merged key by key)."""
    dest = tmp / f"profile-{name}"
    shutil.copytree(PROFILES / name, dest, dirs_exist_ok=True)
    config = yaml.safe_load((dest / "config.yaml").read_text())
    for key, value in settings.items():
        key = key.replace("_", "-")
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    return dest


def slurm_profile(tmp: Path, **settings) -> Path:
    """The README's steps for workflow/profiles/slurm on this controller: the partition, and squeue as
    the status command (no accounting daemon). The first status check 2 s after a job ends instead of
    40 s only makes the tests faster."""
    return profile_copy(tmp, "slurm", default_resources={"slurm_partition": PARTITION},
                        slurm_status_command="squeue", slurm_init_seconds_before_status_checks=2,
                        **settings)  # fmt: skip


def generic_profile(tmp: Path, **settings) -> Path:
    """The README's steps for workflow/profiles/cluster-generic on SLURM: its submit, status and cancel
    commands (absolute paths: the tests run in a temporary working directory)."""
    here = PROFILES / "cluster-generic"
    return profile_copy(tmp, "cluster-generic",
                        cluster_generic_submit_cmd=f"{here / 'slurm-submit.py'} --partition={PARTITION}",
                        cluster_generic_status_cmd=str(here / "slurm-status.py"),
                        cluster_generic_cancel_cmd="scancel", seconds_between_status_checks=2,
                        **settings)  # fmt: skip


def _command(profile: Path, args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(profile), *args]


def run(work: Path, profile: Path, *args: str, cluster: Cluster, check: bool = True):
    proc = subprocess.run(_command(profile, args), cwd=work, env=cluster.env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def plan(output: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table a run prints before it starts."""
    return planned_jobs(SimpleNamespace(stdout=output, stderr=""))


def start(work: Path, profile: Path, *args: str, cluster: Cluster) -> tuple[subprocess.Popen, Path]:
    out = work / f"snakemake-{time.monotonic_ns()}.out"
    with out.open("w") as fh:
        proc = subprocess.Popen(_command(profile, args), cwd=work, env=cluster.env, stdout=fh,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    return proc, out


def submitted(text: str) -> list[str]:
    """SLURM job ids of the jobs the executor submitted, from its output (either plugin)."""
    slurm = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    generic = re.findall(r"Submitted (?:group )?job \d+ with external jobid '(\d+)'", text)
    return slurm + generic


def rule_of(comment: str) -> tuple[str, str]:
    """(rule, wildcards) from a job's SLURM comment ``rule_<rule>[_wildcards_<values>]``, which the slurm
    plugin and slurm-submit.py both set."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", comment)
    assert match, comment
    return match.group(1), match.group(2) or ""


def extraction_rules(work: Path, profile: Path, cluster: Cluster) -> Counter[str]:
    """The feature-extraction rules of the workflow (``features`` or ``features_<modality>``) whose jobs
    the target needs, with their job counts, from a dry run."""
    dry = run(work, profile, "-n", "--quiet=rules", "--forceall", TARGET, cluster=cluster)
    rules = Counter(
        {r: n for r, n in planned_jobs(dry).items() if r == "features" or r.startswith("features_")}
    )
    assert rules, dry.stdout[-2000:]
    return rules


# ---------------------------------------------------------------------------------------------------
# what two runs of the same config reproduce


def _h5_digest(path: Path) -> str:
    """Content of a feature cache: its datasets and attributes, less the extraction time and the digest
    of the input files' sizes and modification times (the two runs generate their own demo files)."""
    digest = sha256()
    with h5py.File(path) as f:
        for key in sorted(set(f.attrs) - {"created", "inputs_sha256"}):
            digest.update(f"{key}={f.attrs[key]!r}".encode())
        names: list[str] = []
        f.visit(names.append)
        for name in sorted(names):
            if isinstance(f[name], h5py.Dataset):
                data = f[name][()]
                # variable-length strings come back as an object array: hash the values, not pointers
                digest.update(
                    name.encode()
                    + (repr(data.tolist()).encode() if data.dtype.kind == "O" else data.tobytes())
                )
    return digest.hexdigest()


def deterministic_outputs(work: Path) -> dict[str, str]:
    """sha256 of every output two runs of one config reproduce byte for byte: the synthetic data, the
    cohort table, the extraction reports, the runs' predictions, the table and its tidy CSV; the feature
    caches by content (their ``created`` attribute is the extraction time). Left out: the runs'
    metrics, histories, checkpoints and summaries (they hold timings) and logs/benchmarks."""
    out = {}
    patterns = ["resources/synthetic/lung/**/*", "results/lung/cohorts/*.parquet",
                "results/lung/features/*/*", "results/lung/runs/**/predictions.parquet",
                "results/table4.csv", "results/tidy/table4.csv"]  # fmt: skip
    for pattern in patterns:
        for path in work.glob(pattern):
            if path.is_file() and not path.name.startswith(".snakemake"):
                digest = _h5_digest(path) if path.suffix == ".h5" else sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(work))] = digest
    return out


def assert_same_outputs(work: Path, reference: Path, only: str = "") -> int:
    ours, theirs = deterministic_outputs(work), deterministic_outputs(reference)
    if only:
        ours = {k: v for k, v in ours.items() if k.startswith(only)}
        theirs = {k: v for k, v in theirs.items() if k.startswith(only)}
    assert set(ours) == set(theirs), set(ours) ^ set(theirs)
    differ = [k for k in ours if ours[k] != theirs[k]]
    assert not differ, differ
    return len(ours)


def copy_workdir(src: Path, dest: Path) -> Path:
    """A copy of a finished working directory (outputs, Snakemake's records) without its logs."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("logs", "*.out", "locks", "log"))
    return dest


def gpu_request(job: dict[str, str]) -> str:
    """The GPU part of a job's request in scontrol's fields (``--gpus`` -> TresPerJob, ``--gres``)."""
    return job.get("TresPerJob", "") + job.get("TresPerNode", "")


FINAL = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "PREEMPTED",
}


def wait_state(cluster: Cluster, jobid: str, states: set[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = cluster.history().get(jobid, "")
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"SLURM job {jobid} did not reach {states} within {timeout} s")


def _suspend(cluster: Cluster, jobid: str) -> bool:
    """Freeze a job (SIGSTOP to its processes); False if it ended first."""
    done = subprocess.run(["scontrol", "suspend", jobid], env=cluster.env, capture_output=True)
    if done.returncode != 0 or wait_state(cluster, jobid, {"SUSPENDED", *FINAL}) != "SUSPENDED":
        return False
    time.sleep(0.5)  # SIGSTOP has reached its processes
    return True


def _new_fold(run_dir: Path, since: float) -> bool:
    """Whether the run's first fold is on disk and was written after ``since`` (a time.time())."""
    try:
        return (run_dir / "fold0").stat().st_mtime >= since - 1.0
    except FileNotFoundError:
        return False


def cancel_training_mid_run(
    cluster: Cluster, proc: subprocess.Popen, out: Path, work: Path
) -> tuple[str, Path]:
    """``scancel`` a training job between its first fold and its summary; return its SLURM id and run
    directory. The training jobs' run folders are watched every few milliseconds (squeue, slower, only
    maps them to job ids) and a job is frozen (``scontrol suspend``) as soon as its first fold appears, so
    that a fast machine is caught between folds too (the config trains 100 epochs per fold); one that has
    already written its summary is passed over. A fold counts once it is newer than the job (a forced
    rerun starts with the previous run's folders on disk)."""
    jobs: dict[Path, str] = {}
    seen: dict[str, float] = {}  # SLURM id -> when it was first seen running
    passed: set[str] = set()
    deadline = time.monotonic() + 900
    next_query = 0.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before a job was cancelled:\n{out.read_text()[-3000:]}")
        if time.monotonic() >= next_query:
            for jobid, comment in cluster.running().items():
                rule, wildcards = rule_of(comment)
                if rule == "train":
                    dataset, task, variant, combo, setting = wildcards.split("_")
                    jobs[work / "results" / dataset / "runs" / task / variant / combo / setting] = jobid
                    seen.setdefault(jobid, time.time())
            next_query = time.monotonic() + 0.2
        for run_dir, jobid in jobs.items():
            if jobid in passed or not _new_fold(run_dir, seen[jobid]) or (run_dir / "summary.json").exists():
                continue
            passed.add(jobid)
            if not _suspend(cluster, jobid):
                continue  # it ended meanwhile
            if (run_dir / "summary.json").exists():
                cluster.command("scontrol", "resume", jobid)
                continue
            cluster.command("scancel", jobid)
            assert wait_state(cluster, jobid, FINAL) == "CANCELLED"
            return jobid, run_dir
        time.sleep(0.005)
    raise AssertionError("no training job was running between its first fold and its end")


def check_jobs(
    cluster: Cluster, work: Path, profile: Path, ids: list[str], cancelled: str
) -> dict[str, dict[str, str]]:
    """The SLURM side of the submitted jobs: each once, every one done (the cancelled one cancelled), its
    output under logs/slurm/rule_<rule>/<wildcards>/<id>.log, the profile's settings in force in the job;
    returns scontrol's fields per job."""
    assert ids and len(ids) == len(set(ids)), ids
    jobs = {jobid: cluster.job(jobid) for jobid in ids}
    for jobid, job in jobs.items():
        assert job["JobState"] == ("CANCELLED" if jobid == cancelled else "COMPLETED"), job
        rule, wildcards = rule_of(job["Comment"])
        log = work / "logs" / "slurm" / f"rule_{rule}" / wildcards / f"{jobid}.log"
        assert job["StdOut"] == str(log) and log.is_file(), (job["StdOut"], log)
    text = Path(jobs[cancelled]["StdOut"]).read_text()
    assert "Finished jobid" not in text, text[-2000:]  # its command never completed
    # the job ran with the profile's settings (the workflow's default profile overrides keys it sets)
    latency = yaml.safe_load((profile / "config.yaml").read_text())["latency-wait"]
    assert f"--latency-wait {latency} " in text, text[:3000]
    return jobs


def gpu_routing(rules: Iterable[str]) -> dict[str, dict]:
    """The README's GPU step: set-resources sending the extraction rules to the GPU partition."""
    return {rule: {"slurm_partition": GPU_PARTITION, "gpu": 1} for rule in rules}


def check_placement(jobs: dict[str, dict[str, str]], gpu_rules: Iterable[str]) -> None:
    """Jobs of ``gpu_rules`` ran on the GPU node with one GPU, every other one on the CPU node without."""
    for job in jobs.values():
        rule = rule_of(job["Comment"])[0]
        if rule in gpu_rules:
            assert (job["Partition"], job["NodeList"]) == (GPU_PARTITION, "gpu1"), job
            assert "gpu:1" in gpu_request(job), job
        else:
            assert (job["Partition"], job["NodeList"]) == (PARTITION, "cpu1"), job
            assert "gpu" not in gpu_request(job), job


def cancelled_run(cluster: Cluster, work: Path, profile: Path, *args: str) -> tuple[str, str]:
    """A first invocation (no retries) in which a training job is cancelled once it has written a fold:
    it fails, naming the job, and leaves nothing under the run's name. Returns (output, SLURM id)."""
    proc, out = start(work, profile, "--retries", "0", *args, cluster=cluster)
    cancelled, run_dir = cancel_training_mid_run(cluster, proc, out, work)
    assert proc.wait(timeout=900) != 0
    text = out.read_text()
    assert "Error in rule train" in text and f"{cancelled}" in text, text[-3000:]
    assert not run_dir.exists(), sorted(run_dir.rglob("*"))  # nothing half-written under its name
    return text, cancelled


def test_slurm_profile_submits_every_job_and_reruns_a_cancelled_one(cluster, local_run, tmp_path):
    """The README's SLURM steps on a cluster without GPUs: the whole tiny workflow (extraction asks for
    no GPU), a training job cancelled mid-run, the rerun, and the outputs of a local run."""
    cluster.ensure(gpus=0)
    work = tmp_path / "work"
    write_config(work, cluster_config())
    profile = slurm_profile(tmp_path)
    first, cancelled = cancelled_run(cluster, work, profile, TARGET)
    planned = plan(first)
    assert sum(planned.values()) == 7 and planned["train"] == 2, planned
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in first, first[-3000:]
    assert not (work / TARGET).exists()
    # the next invocation reruns the cancelled job (and the table it held up)
    proc = run(work, profile, TARGET, cluster=cluster)
    second = proc.stdout + proc.stderr
    assert plan(second) == {"train": 1, "table": 1}

    # every job went through sbatch: the ids in the executor's output are the jobs squeue knows by the
    # runs' names, one per planned job plus the cancelled one's rerun
    ids = submitted(first) + submitted(second)
    jobs = check_jobs(cluster, work, profile, ids, cancelled)
    rules = Counter(rule_of(job["Comment"])[0] for job in jobs.values())
    assert rules == Counter(planned) + Counter({"train": 1}), rules
    history: dict[str, str] = {}
    for name in re.findall(r"SLURM run ID: (\S+)", first + second):
        history.update(cluster.history(name))
    assert set(history) == set(ids), (history, ids)
    # no job asked for a GPU (features.device: auto), every one ran in the default partition
    check_placement(jobs, gpu_rules=[])
    # the rules' own logs are where they are in a local run
    for log in ("logs/synth/lung.log", "logs/features/lung/subtype/ct.log", "logs/report/table4.log",
                "logs/train/lung/subtype/omnifuse-a/ct+pet/complete.log"):  # fmt: skip
        assert (work / log).is_file(), log
    # the outputs are those of a local run of the same config
    same = assert_same_outputs(work, local_run.result())
    assert same == len(deterministic_outputs(local_run.result()))
    print(f"slurm profile: {len(submitted(first))} + {len(submitted(second))} sbatch jobs "
          f"({dict(rules)}), {same} outputs equal to the local run's")  # fmt: skip


@pytest.mark.parametrize("kind", ["slurm", "cluster-generic"])
def test_a_gpu_request_fails_at_submission_on_a_cluster_without_gpus(cluster, local_run, tmp_path, kind):
    """features.device: cuda says GPUs exist: extraction asks for one, which a controller without a GPU
    GRES rejects at once (the default, auto, asks for none: the test above)."""
    cluster.ensure(gpus=0)
    work = copy_workdir(local_run.result(), tmp_path / "work")
    config = cluster_config()
    config["features"]["device"] = "cuda"
    write_config(work, config)
    profile = slurm_profile(tmp_path) if kind == "slurm" else generic_profile(tmp_path)
    proc = run(work, profile, "results/lung/features/subtype/ct.h5", cluster=cluster, check=False)
    assert proc.returncode != 0
    assert "Invalid generic resource (gres) specification" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert not submitted(proc.stdout + proc.stderr)


def test_slurm_profile_sends_extraction_to_the_gpu_partition(cluster, local_run, tmp_path):
    """The README's GPU step on a controller with a fake GPU GRES: the extraction jobs are accepted with
    a GPU and run on the GPU node (training next to them: the cluster-generic test below)."""
    cluster.ensure(gpus=2)
    work = copy_workdir(local_run.result(), tmp_path / "work")
    rules = extraction_rules(work, slurm_profile(tmp_path), cluster)
    profile = slurm_profile(tmp_path, set_resources=gpu_routing(rules))
    caches = [f"results/lung/features/subtype/{m}.h5" for m in ("ct", "pet")]
    proc = run(work, profile, *caches, "--forcerun", *rules, cluster=cluster)
    jobs = {jobid: cluster.job(jobid) for jobid in submitted(proc.stdout + proc.stderr)}
    assert Counter(rule_of(job["Comment"])[0] for job in jobs.values()) == rules and rules.total() == 2
    assert {job["JobState"] for job in jobs.values()} == {"COMPLETED"}
    check_placement(jobs, gpu_rules=rules)
    # on the fake GPU (no CUDA device behind it) device auto fell back to the CPU: the caches are the
    # local run's
    with h5py.File(work / caches[0]) as f:
        assert f.attrs["device"] == "cpu"
    assert assert_same_outputs(work, local_run.result(), only="results/lung/features") == 4
    print(f"slurm profile, GPU partition: {len(jobs)} sbatch jobs, 4 cache files equal to the local run's")


def test_cluster_generic_profile_submits_every_job_and_reruns_a_cancelled_one(cluster, local_run, tmp_path):
    """cluster-generic with its SLURM submit, status and cancel commands and the GPU step, on a copy of
    the local run with extraction and training forced: extraction on the fake GPU node, a training job
    cancelled mid-run, the rerun, and the outputs of the local run."""
    cluster.ensure(gpus=2)
    work = copy_workdir(local_run.result(), tmp_path / "work")
    rules = extraction_rules(work, generic_profile(tmp_path), cluster)
    profile = generic_profile(tmp_path, set_resources=gpu_routing(rules))
    args = (TARGET, "--forcerun", *rules, "train")
    first, cancelled = cancelled_run(cluster, work, profile, *args)
    planned = plan(first)
    assert planned == {**rules, "train": 2, "table": 1}, planned
    assert f"external_jobid: {cancelled}" in first, first[-3000:]
    proc = run(work, profile, TARGET, cluster=cluster)
    second = proc.stdout + proc.stderr
    assert plan(second) == {"train": 1, "table": 1}

    ids = submitted(first) + submitted(second)
    jobs = check_jobs(cluster, work, profile, ids, cancelled)
    rules_run = Counter(rule_of(job["Comment"])[0] for job in jobs.values())
    assert rules_run == Counter(planned) + Counter({"train": 1}), rules_run
    assert set(ids) <= set(cluster.history())
    check_placement(jobs, gpu_rules=rules)
    train = [job for job in jobs.values() if job["Comment"].startswith("rule_train")]
    assert {job["MinMemoryNode"] for job in train} == {"4000M"}  # the rule's mem_mb, not the default
    same = assert_same_outputs(work, local_run.result())
    assert same == len(deterministic_outputs(local_run.result()))
    print(f"cluster-generic profile: {len(submitted(first))} + {len(submitted(second))} sbatch jobs "
          f"({dict(rules_run)}), {same} outputs equal to the local run's")  # fmt: skip
