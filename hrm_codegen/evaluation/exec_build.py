"""Build the `exec` benchmark: run generated programs in the sandbox for their answers and step
counts, and split them by difficulty (the number of executed steps).

Why here and not in `data/`: the answer of every program is what our sandbox prints when it runs
it, never a value computed by code written here; running programs is the evaluator's job.

Each program runs with a small tracer appended: `sys.settrace` counts the line events executed
in the program's own functions (`f`, `g` and what they define) while `f(<input>)` runs, then the
program prints the count and `repr` of the value. Every program runs twice: once in the default
mode (a fork server) and once in a fresh sandboxed interpreter per program, so that the two
runs use different hash seeds; a program whose answers differ is dropped as non-deterministic.
Also dropped, each counted in the manifest: programs that raise, time out, return a value that
is not a Python literal that round-trips through `ast.literal_eval` (or is longer than
`max_output_chars`), exceed `max_steps`, or repeat an earlier program.

Splits (seeded and deterministic: programs are generated in order and each kept one goes to the
first split with room that its rule admits): `train` and `validation` and `test` (in
distribution: at most `train_max_steps` steps; validation and test take the programs whose text
hashes to 0 and 1 mod 10), and `test_hard` (more than `train_max_steps`, up to `max_steps`):
harder than anything trained.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.data.exec_programs import (
    GENERATOR_VERSION,
    ExecProgram,
    ExecTask,
    bucket_of,
    fingerprint_tasks,
    generate_programs,
    write_tasks,
)

RESULT_PREFIX = "EXEC-RESULT "
SPLITS = ("train", "validation", "test", "test_hard")
DEFAULT_EDGES = (8, 16, 32, 64, 128, 256, 512)

# Appended to every program: counts line events inside the program's own code objects (and the
# ones nested in them: comprehensions) while the call runs, then prints count and answer.
_TRACER = """
import json as _json, sys as _sys, types as _types
def _own_codes():
    out, todo = set(), [v.__code__ for v in list(globals().values())
                        if isinstance(v, _types.FunctionType)]
    while todo:
        code = todo.pop()
        out.add(code)
        todo += [c for c in code.co_consts if isinstance(c, _types.CodeType)]
    return out
_codes = _own_codes()
_steps = [0]
def _trace(frame, event, arg):
    if frame.f_code not in _codes:
        return None
    if event == "line":
        _steps[0] += 1
    return _trace
_sys.settrace(_trace)
_value = {call}
_sys.settrace(None)
print({prefix!r} + _json.dumps({{"steps": _steps[0], "output": repr(_value)}}))
"""


@dataclass(frozen=True)
class Measured:
    """One program's sandbox run: `steps` and `output` when it `ok`, else `drop` (a reason)."""

    steps: int | None
    output: str | None
    drop: str | None = None


def traced_program(program: ExecProgram) -> str:
    """The program text that the sandbox runs: the code, then the tracer calling `call`."""
    return program.code + _TRACER.format(call=program.call, prefix=RESULT_PREFIX)


def _parse(result: Any) -> tuple[int, str] | str:
    """(steps, output) from a sandbox result, or the reason to drop the program."""
    if result.status == "timeout":
        return "timeout"
    if result.status != "passed":
        return "raised" if result.status == "failed" else "sandbox_error"
    lines = [ln for ln in result.stdout_tail.splitlines() if ln.startswith(RESULT_PREFIX)]
    if len(lines) != 1:
        return "no_result_line"
    record = json.loads(lines[0][len(RESULT_PREFIX) :])
    return int(record["steps"]), str(record["output"])


def _literal_round_trips(text: str) -> bool:
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return repr(value) == text


def measure_programs(
    programs: Sequence[ExecProgram],
    *,
    max_output_chars: int = 80,
    timeout: float = 5.0,
    workers: int | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> list[Measured]:
    """Run every program twice in the sandbox (fork server, then fresh interpreters) and keep
    the answers both runs agree on; see the module docstring for what is dropped."""
    from hrm_codegen.evaluation.sandbox import run_programs

    texts = [traced_program(p) for p in programs]
    first = run_programs(
        texts, timeout=timeout, workers=workers, backend=backend, progress=progress,
        desc="exec: run 1/2",
    )  # fmt: skip
    keep = [i for i, r in enumerate(first) if r.status == "passed"]
    second_runs = run_programs(
        [texts[i] for i in keep], timeout=timeout, workers=workers, backend=backend,
        progress=progress, desc="exec: run 2/2 (fresh interpreters)", mode="process",
    )  # fmt: skip
    second = dict(zip(keep, second_runs))
    out = []
    for i, result in enumerate(first):
        parsed = _parse(result)
        if isinstance(parsed, str):
            out.append(Measured(None, None, parsed))
            continue
        again = _parse(second[i])
        steps, output = parsed
        if again != parsed:
            out.append(Measured(None, None, "nondeterministic"))
        elif len(output) > max_output_chars:
            out.append(Measured(None, None, "output_too_long"))
        elif not _literal_round_trips(output):
            out.append(Measured(None, None, "not_a_literal"))
        else:
            out.append(Measured(steps, output))
    return out


def _split_rule(program: ExecProgram, steps: int, train_max_steps: int) -> str:
    if steps > train_max_steps:
        return "test_hard"
    residue = int(hashlib.sha256(program.text.encode()).hexdigest(), 16) % 10
    return {0: "validation", 1: "test"}.get(residue, "train")


def build_exec_benchmark(
    out: str | Path,
    *,
    seed: int = 0,
    sizes: dict[str, int],
    train_max_steps: int = 64,
    max_steps: int = 512,
    max_depth: int = 2,
    max_statements: int = 8,
    max_output_chars: int = 80,
    edges: Sequence[int] = DEFAULT_EDGES,
    batch: int = 2000,
    max_programs: int | None = None,
    workers: int | None = None,
    backend: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate, run and split programs until every split of `sizes` ({split: count}) is full
    (or `max_programs` were generated: an error naming the short splits); write
    `<out>/<split>.jsonl` and `<out>/meta.json` (staged, renamed at the end) and return the
    manifest. The same arguments give the same bytes on every machine."""
    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown or not sizes:
        raise ValueError(f"sizes={sizes}: name splits among {', '.join(SPLITS)}")
    if not 0 < train_max_steps < max_steps:
        raise ValueError(
            f"train_max_steps={train_max_steps}, max_steps={max_steps}: need "
            "0 < train_max_steps < max_steps"
        )
    out = Path(out)
    max_programs = max_programs or 50 * sum(sizes.values())
    settings = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "sizes": dict(sizes),
        "train_max_steps": train_max_steps,
        "max_steps": max_steps,
        "max_depth": max_depth,
        "max_statements": max_statements,
        "max_output_chars": max_output_chars,
        "python": sys.version.split()[0],
    }
    tasks: dict[str, list[ExecTask]] = {s: [] for s in sizes}
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    generated = 0
    stream = generate_programs(
        seed, max_programs, max_depth=max_depth, max_statements=max_statements
    )
    start = time.monotonic()
    while any(len(tasks[s]) < n for s, n in sizes.items()) and generated < max_programs:
        chunk = [p for _, p in zip(range(batch), stream)]
        if not chunk:
            break
        generated += len(chunk)
        fresh = []
        for program in chunk:
            if program.text in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(program.text)
                fresh.append(program)
        for program, m in zip(fresh, measure_programs(
            fresh, max_output_chars=max_output_chars, workers=workers, backend=backend,
            progress=False,
        )):  # fmt: skip
            if m.drop:
                dropped[m.drop] += 1
                continue
            assert m.steps is not None and m.output is not None
            if m.steps > max_steps:
                dropped["too_many_steps"] += 1
                continue
            split = _split_rule(program, m.steps, train_max_steps)
            if split not in sizes or len(tasks[split]) >= sizes[split]:
                dropped[f"{split}_full"] += 1
                continue
            number = len(tasks[split])
            tasks[split].append(
                ExecTask(f"Exec/{split}/{number}", program.code, program.call, m.output, m.steps)
            )
        filled = ", ".join(f"{s} {len(tasks[s])}/{n}" for s, n in sizes.items())
        log(f"exec: {generated} programs generated, {time.monotonic() - start:.0f} s; {filled}")
    short = {s: f"{len(tasks[s])}/{n}" for s, n in sizes.items() if len(tasks[s]) < n}
    if short:
        raise RuntimeError(
            f"exec: {generated} programs filled only {short}; raise max_programs or lower "
            "the sizes (harder splits need a larger max_depth/max_statements)"
        )
    manifest = {
        "format": 1,
        "benchmark": "exec",
        "settings": settings,
        "edges": list(edges),
        "generated": generated,
        "dropped": dict(sorted(dropped.items())),
        "splits": {
            split: {
                "tasks": len(items),
                "fingerprint": fingerprint_tasks(items),
                "buckets": dict(sorted(Counter(bucket_of(t.steps, edges) for t in items).items())),
                "steps": [min(t.steps for t in items), max(t.steps for t in items)],
            }
            for split, items in tasks.items()
        },
    }
    manifest["fingerprint"] = hashlib.sha256(
        json.dumps({s: v["fingerprint"] for s, v in manifest["splits"].items()}).encode()
    ).hexdigest()
    stage = out.with_name(out.name + f".building-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for split, items in tasks.items():
        write_tasks(stage / f"{split}.jsonl", items)
    (stage / "meta.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
    return manifest


__all__ = [
    "DEFAULT_EDGES",
    "SPLITS",
    "Measured",
    "build_exec_benchmark",
    "measure_programs",
    "traced_program",
]
