"""Where a study's runs execute (`study.executor`, checked by spec.load_executor_spec): here, as
Slurm jobs, or as Ray tasks.

A study step is a set of independent runs (or evaluations); `run_keys(runner, method, keys)`
hands each to an engine that researchers already run, rather than a scheduler of our own:
- `local`: `jobs` worker processes on this machine (in this process when `jobs` is 1). With GPUs
  visible, each worker gets its own (`CUDA_VISIBLE_DEVICES` set before it touches CUDA); more
  workers than GPUs is refused.
- `slurm`: every run a Slurm job through `submitit` (partition, GPUs, CPUs, time limit, account
  from the config). The launcher keeps a ledger of what it submitted
  (`<out>/submitit/jobs.json`); started again after it died, it waits for those jobs that are
  still queued or running, skips runs that are done, and submits again the ones that failed or
  were preempted (a run resumes from its own checkpoint), up to `max_retries` times. submitit's
  `local` cluster (processes on this machine) runs the same path without Slurm, for tests.
- `ray`: every run a Ray task with its CPU/GPU request, on an existing cluster (`address: auto`
  after `ray start` on the nodes) or a local instance (`address: null`).
Results are the same whichever executor ran them: each run is an ordinary run folder, written by
the same `StudyRunner` method.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hrm_codegen.study.spec import ExecutorSpec, StudyConfigError, lr_tag

_LEDGER = "jobs.json"


def key_label(method: str, key: Any) -> str:
    """A run's name in logs and the ledger: `train/pretrain/hrm/lr1e-03-seed0`."""
    if hasattr(key, "relative"):  # a scaling study's key
        return f"{method}/{key.relative().as_posix()}"
    return f"{method}/{key.stage}/{key.arm}/{lr_tag(key.lr)}-seed{key.seed}"


def run_keys(
    runner: Any, method: str, keys: list[Any], progress: Any, worker: Callable[..., Any]
) -> None:
    """`runner.<method>(key)` for every key on the study's executor; `progress.done(key,
    result)` as each finishes; the first failure (after retries) is raised here."""
    spec: ExecutorSpec = runner.spec.executor
    if spec.kind == "slurm":
        return _submitit(runner, method, keys, progress, worker, spec)
    if spec.kind == "ray":
        return _ray(runner, method, keys, progress, worker, spec)
    raise AssertionError("the local executor runs in StudyRunner.for_each")


def _absolute(runner: Any) -> Any:
    """A copy of the runner whose folders are absolute: jobs may start in another directory."""
    other = copy.copy(runner)
    other.out = Path(runner.out).resolve()
    for name in ("tokenizer_dir", "corpus_dir"):
        value = getattr(runner, name, None)
        if value is not None and Path(str(value)).exists():
            setattr(other, name, Path(str(value)).resolve())
    return other


# ----------------------------------------------------------------------------- local GPUs


def threads_per_job(jobs: int) -> int:
    """The CPU threads each of `jobs` side-by-side runs gets (the cores this process may use)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, jobs))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` names them."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch CUDA build: no GPUs
        return []


def gpu_groups(gpus: list[str], jobs: int) -> list[str]:
    """`CUDA_VISIBLE_DEVICES` for each of `jobs` local workers: the GPUs split evenly, each worker
    its own; more workers than GPUs is a `StudyConfigError` with the numbers."""
    if not gpus:
        return []
    if jobs > len(gpus):
        raise StudyConfigError(
            f"study.jobs={jobs} local workers but {len(gpus)} GPU(s) visible "
            f"({','.join(gpus)}): each worker needs its own; use study.jobs <= {len(gpus)}"
        )
    per = len(gpus) // jobs
    return [",".join(gpus[i * per : (i + 1) * per]) for i in range(jobs)]


# ----------------------------------------------------------------------------- slurm (submitit)


def _ledger(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / _LEDGER
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_ledger(folder: Path, ledger: dict[str, dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{_LEDGER}.tmp"
    tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
    tmp.replace(folder / _LEDGER)


def _still_running(executor: Any, folder: Path, entry: dict[str, Any]) -> Any:
    """The job of a ledger entry when it is still queued or running, else None."""
    import submitit

    job_id = str(entry["job_id"])
    if entry.get("cluster") == "slurm":
        job = submitit.SlurmJob(folder=folder, job_id=job_id)
        return None if job.done() else job
    # submitit's local cluster: the job id is the process id of its python
    pid = int(job_id.split("_")[0])
    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"submitit" in cmdline:
            return _Pid(pid)
    return None


class _Pid:
    """A job of submitit's local cluster started by a previous launcher: wait for its process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def done(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        return not Path(f"/proc/{self.pid}").exists()

    def cancel(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


def _submitit(
    runner: Any,
    method: str,
    keys: list[Any],
    progress: Any,
    worker: Callable[..., Any],
    spec: ExecutorSpec,
) -> None:
    import submitit

    runner = _absolute(runner)
    folder = runner.out / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=spec.cluster)
    params: dict[str, Any] = {
        "name": f"{runner.spec.name}-{method}",
        "timeout_min": spec.timeout_min,
        "cpus_per_task": spec.cpus_per_run,
    }
    if spec.gpus_per_run:
        params["gpus_per_node"] = spec.gpus_per_run
    if spec.mem_gb:
        params["mem_gb"] = spec.mem_gb
    if executor.cluster == "slurm":
        for name, value in (("partition", spec.partition), ("account", spec.account)):
            if value:
                params[f"slurm_{name}"] = value
        if spec.slurm_extra:
            params["slurm_additional_parameters"] = dict(spec.slurm_extra)
    executor.update_parameters(**params)
    ledger = _ledger(folder)
    running: dict[Any, tuple[Any, str]] = {}

    def submit(key: Any, label: str, attempts: int) -> None:
        job = executor.submit(worker, runner, method, key)
        ledger[label] = {
            "job_id": str(job.job_id),
            "cluster": executor.cluster,
            "attempts": attempts,
        }
        _save_ledger(folder, ledger)
        running[job] = (key, label)
        runner.log(f"submitted {label} as job {job.job_id} ({executor.cluster})")

    def finished_run(key: Any) -> str | None:
        """A training run that is done here (nothing to submit), else None."""
        status = runner.status(key) if method == "train" else None
        return status if status in ("done", "diverged") else None

    earlier: set[Any] = set()
    for key in keys:
        label = key_label(method, key)
        entry = ledger.get(label)
        job = _still_running(executor, folder, entry) if entry else None
        if job is not None:  # a previous launcher's job: wait for it, then judge by the run
            runner.log(f"waiting for {label}: job {entry['job_id']} from an earlier launcher")
            running[job] = (key, label)
            earlier.add(job)
        elif finished_run(key):
            progress.done(key, finished_run(key))
        else:
            submit(key, label, int(entry["attempts"]) + 1 if entry else 1)
    while running:
        finished = [job for job in running if job.done()]
        if not finished:
            time.sleep(2.0)
            continue
        for job in finished:
            key, label = running.pop(job)
            if job in earlier:  # judged by the run it left behind
                if finished_run(key):
                    progress.done(key, finished_run(key))
                else:
                    submit(key, label, int(ledger[label]["attempts"]) + 1)
                continue
            try:
                result = job.result()
            except Exception as error:  # failed, killed or preempted: the run resumes on resubmit
                attempts = int(ledger[label]["attempts"])
                if attempts > spec.max_retries:
                    for other in running:
                        with contextlib.suppress(Exception):
                            other.cancel()
                    raise RuntimeError(
                        f"{label} failed {attempts} time(s) (job {ledger[label]['job_id']}): "
                        f"{str(error).strip().splitlines()[-1] if str(error).strip() else error}; "
                        f"its output is in {folder}"
                    ) from error
                runner.log(f"{label}: job {ledger[label]['job_id']} failed; submitting again")
                submit(key, label, attempts + 1)
                continue
            progress.done(key, result)


# ----------------------------------------------------------------------------- ray


def _ray(
    runner: Any,
    method: str,
    keys: list[Any],
    progress: Any,
    worker: Callable[..., Any],
    spec: ExecutorSpec,
) -> None:
    import ray

    runner = _absolute(runner)
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if spec.address:
            options["address"] = spec.address
        ray.init(**options)
    task = ray.remote(
        num_cpus=spec.cpus_per_run, num_gpus=spec.gpus_per_run, max_retries=spec.max_retries
    )(_threaded(worker, spec.cpus_per_run))
    pending = {task.remote(runner, method, key): key for key in keys}
    runner.log(f"{method}: {len(pending)} Ray task(s) ({spec.cpus_per_run} CPU, {spec.gpus_per_run} GPU each)")  # fmt: skip
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(done[0])
            progress.done(key, ray.get(done[0]))
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise


def _threaded(worker: Callable[..., Any], threads: int) -> Callable[..., Any]:
    """`worker` with torch's intra-op threads set to the task's CPUs first."""

    def run(runner: Any, method: str, key: Any) -> Any:
        import torch

        torch.set_num_threads(threads)
        return worker(runner, method, key)

    run.__name__ = getattr(worker, "__name__", "run")
    return run


__all__ = [
    "gpu_groups",
    "key_label",
    "run_keys",
    "threads_per_job",
    "visible_gpus",
]
