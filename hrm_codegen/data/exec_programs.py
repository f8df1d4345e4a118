"""Generated code-execution tasks whose difficulty is the number of executed steps (`exec`).

The task is CRUXEval's and LiveCodeBench's output prediction: a short Python function and a call,
`assert f([3, 1, 2]) == ??`; the answer is the exact value, a Python literal. Why generated: the
HRM's claim is that iterating a small network solves problems that need many sequential steps,
so the benchmark must let us train on programs up to k executed steps and test both up to k and
above k. CRUXEval has 800 fixed programs and no step counts; nothing off the shelf has the knob.

This module is the pure, seeded half: a typed random grammar writes programs as text (loops,
conditionals, integer/string/list operations, an optional helper function) and a call with a
literal input. It never computes an answer. The answers and step counts come from running every
program in our sandbox (`hrm_codegen.evaluation.exec_build`), so no second interpreter written
here can disagree with Python. The grammar has no source of non-determinism (no sets, no
hashing, randomness, time or ids); the build still runs every program twice, in fresh
interpreters with different hash seeds, and drops the ones whose answers differ.

Decontaminated by construction: the programs come from this grammar only (single-letter and
`v<k>` names, `f`/`g`), never from a file; `tests/test_exec_programs.py` checks 13-gram overlap
with MBPP and HumanEval when those are present.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hrm_codegen.data.lcb import CodeExecutionProblem

GENERATOR_VERSION = "exec-gen-1"
ALPHABET = "abcde"
INT_LIMIT = 30  # input ints and list items are drawn from 0..INT_LIMIT
MAX_INPUT_LEN = 10


@dataclass(frozen=True)
class ExecProgram:
    """A generated function (`code`, defining `f` and maybe its helper `g`) and its `call`."""

    code: str
    call: str

    @property
    def text(self) -> str:
        return self.code + self.call


@dataclass(frozen=True)
class ExecTask:
    """One task of a built split: the program, its call, the answer the sandbox printed (a
    literal, `repr` of the value) and the number of line events executed inside the program's
    own functions (its difficulty)."""

    task_id: str
    code: str
    call: str
    output: str
    steps: int

    def prompt(self) -> str:
        """What the model sees; the answer follows it, as in LCB's execution scenario."""
        from hrm_codegen.data.prompts import format_exec_prompt

        return format_exec_prompt(self.code, self.call)

    def target(self) -> str:
        """What the model is trained to write after the prompt: the literal, nothing more (the
        end-of-text token that follows ends it; evaluation also stops at a newline)."""
        return self.output

    def problem(self, edges: Sequence[int]) -> CodeExecutionProblem:
        """As LCB's code-execution record (graded by the same scorer), its difficulty the
        step bucket."""
        return CodeExecutionProblem(
            self.task_id, self.code, self.call, self.output, bucket_of(self.steps, edges)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# ------------------------------------------------------------------------------------ grammar


class _Writer:
    """One program: lines, the typed variables in scope and which of them may be assigned."""

    def __init__(self, rng: random.Random, max_depth: int, max_statements: int):
        self.rng = rng
        self.max_depth = max_depth
        self.budget = max_statements
        self.lines: list[str] = []
        self.vars: dict[str, str] = {}  # name -> int | str | list
        self.frozen: set[str] = set()  # loop variables and while counters: read only
        self.counter = 0
        self.helper = False
        self.writes: dict[str, int] = {}  # how often each name was written: what to return
        self.in_loop: set[str] = set()  # names written inside a loop body
        self.loops = 0  # loop bodies we are in

    # names ------------------------------------------------------------------------------
    def new_name(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def pick(self, kind: str, writable: bool = False) -> str | None:
        names = [
            n for n, k in self.vars.items() if k == kind and not (writable and n in self.frozen)
        ]
        return self.rng.choice(names) if names else None

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * (depth + 1) + line)

    def wrote(self, name: str) -> None:
        self.writes[name] = self.writes.get(name, 0) + 1
        if self.loops:
            self.in_loop.add(name)

    def operand(self) -> str:
        """A value that depends on the input or the state (a variable or a length), so that
        conditions and bounds are rarely constant."""
        options = [n for n, k in self.vars.items() if k == "int"]
        options += [f"len({n})" for n, k in self.vars.items() if k in ("str", "list")]
        return self.rng.choice(options) if options else str(self.rng.randint(0, 9))

    # expressions ------------------------------------------------------------------------
    def int_expr(self, depth: int = 0) -> str:
        r = self.rng
        options = ["lit", "var", "var", "var", "bin", "mod"]
        if self.pick("str") or self.pick("list"):
            options.append("len")
        if self.pick("list"):
            options += ["sum", "index"]
        if self.pick("str"):
            options.append("count")
        if self.helper:
            options.append("call")
        if depth < 2:
            options += ["minmax", "bin"]
        kind = r.choice(options)
        if kind == "var":
            name = self.pick("int")
            return name if name else str(r.randint(0, 9))
        if kind == "lit" or depth >= 3:
            return str(r.randint(0, 9))
        if kind == "len":
            return f"len({self.pick('str') or self.pick('list')})"
        if kind == "sum":
            return f"sum({self.pick('list')})"
        if kind == "index":
            lst = self.pick("list")
            return f"({lst}[{self.int_expr(depth + 1)} % len({lst})] if {lst} else 0)"
        if kind == "count":
            return f"{self.pick('str')}.count({r.choice(ALPHABET)!r})"
        if kind == "call":
            return f"g({self.int_expr(depth + 1)}, {self.int_expr(depth + 1)})"
        if kind == "minmax":
            fn = r.choice(("max", "min", "abs"))
            if fn == "abs":
                return f"abs({self.int_expr(depth + 1)} - {self.int_expr(depth + 1)})"
            return f"{fn}({self.int_expr(depth + 1)}, {self.int_expr(depth + 1)})"
        if kind == "mod":
            return f"({self.int_expr(depth + 1)} * {r.randint(2, 9)}) % {r.randint(5, 97)}"
        op = r.choice(("+", "-", "+", "//", "%"))
        left = self.int_expr(depth + 1)
        if op in ("//", "%"):
            return f"{left} {op} {r.randint(2, 9)}"
        return f"{left} {op} {self.int_expr(depth + 1)}"

    def condition(self) -> str:
        r = self.rng
        options = ["cmp", "parity"]
        if self.pick("str"):
            options.append("startswith")
        if self.pick("list"):
            options.append("longer")
        if self.pick("char"):
            options.append("vowel")
        kind = r.choice(options)
        if kind == "parity":
            return f"{self.operand()} % 2 == {r.randint(0, 1)}"
        if kind == "startswith":
            return f"{self.pick('str')}.startswith({r.choice(ALPHABET)!r})"
        if kind == "longer":
            return f"len({self.pick('list')}) > {r.randint(0, 5)}"
        if kind == "vowel":
            return f"{self.pick('char')} in {''.join(r.sample(ALPHABET, 2))!r}"
        op = r.choice(("<", ">", "<=", ">=", "==", "!="))
        return f"{self.operand()} {op} {self.int_expr(1)}"

    # statements -------------------------------------------------------------------------
    def block(self, depth: int, n: int) -> None:
        for _ in range(n):
            if self.budget <= 0:
                break
            self.statement(depth)

    def statement(self, depth: int) -> None:
        r = self.rng
        self.budget -= 1
        options = ["assign", "assign", "aug", "aug"]
        if self.pick("str", writable=True):
            options += ["str_op", "str_op"]
        if self.pick("list", writable=True):
            options += ["list_op", "list_op"]
        if depth < self.max_depth:
            options += ["for_range", "for_each", "if", "if", "while"]
        kind = r.choice(options)
        if kind == "assign":
            # nested blocks mostly write what outlives them (a new name there is dropped)
            reuse = 0.85 if depth > 0 else 0.4
            name = self.pick("int", writable=True) if r.random() < reuse else None
            name = name or self.new_name()
            value = self.int_expr()
            self.vars[name] = "int"
            self.wrote(name)
            self.emit(depth, f"{name} = {value}")
        elif kind == "aug":
            name = self.pick("int", writable=True)
            if name is None:
                name = self.new_name()
                self.emit(depth, f"{name} = {r.randint(0, 9)}")
                self.vars[name] = "int"
            op = r.choice(("+=", "-=", "+="))
            self.wrote(name)
            self.emit(depth, f"{name} {op} {self.int_expr(1)}")
        elif kind == "str_op":
            s = self.pick("str", writable=True)
            self.wrote(s)
            choice = r.randrange(6)
            if choice == 0:
                self.emit(depth, f"{s} += {r.choice(ALPHABET)!r}")
            elif choice == 1:
                self.emit(depth, f"{s} = {s} + str({self.int_expr(1)} % 10)")
            elif choice == 2:
                self.emit(depth, f"{s} = {s}[::-1]")
            elif choice == 3:
                a, b = r.sample(ALPHABET, 2)
                self.emit(depth, f"{s} = {s}.replace({a!r}, {b!r})")
            elif choice == 4:
                self.emit(depth, f"{s} = {s}[1:]")
            else:
                c = self.pick("char")
                self.emit(depth, f"{s} = {s} + {c}" if c else f"{s} = {s}.upper()")
        elif kind == "list_op":
            lst = self.pick("list", writable=True)
            self.wrote(lst)
            choice = r.randrange(5)
            if choice == 0:
                self.emit(depth, f"{lst}.append({self.int_expr(1)})")
            elif choice == 1:
                self.emit(depth, f"{lst}.sort()")
            elif choice == 2:
                self.emit(depth, f"{lst}.reverse()")
            elif choice == 3:
                k, m = r.randint(2, 5), r.randint(7, 50)
                self.emit(depth, f"{lst} = [y * {k} % {m} for y in {lst}]")
            else:
                self.emit(depth, f"if {lst}:")
                self.emit(depth + 1, f"{lst}.pop()")
        elif kind == "for_range":
            var = self.new_name()
            bound = r.choice((str(r.randint(1, 6)), f"min({self.operand()}, 12)"))
            if self.pick("list") and r.random() < 0.3:
                bound = f"len({self.pick('list')})"
            self.emit(depth, f"for {var} in range({bound}):")
            self.loop_body(depth, var, "int")
        elif kind == "for_each":
            seq = self.pick("str") or self.pick("list")
            if seq is None:
                return self.statement(depth)
            var = self.new_name()
            self.emit(depth, f"for {var} in {seq}:")
            # iterating a list that the body changes can run forever: freeze it inside
            was_frozen = seq in self.frozen
            self.frozen.add(seq)
            self.loop_body(depth, var, "char" if self.vars[seq] == "str" else "int")
            if not was_frozen:
                self.frozen.discard(seq)
        elif kind == "if":
            self.emit(depth, f"if {self.condition()}:")
            self.scoped_block(depth + 1, r.randint(1, 2))
            if r.random() < 0.5:
                self.emit(depth, "else:")
                self.scoped_block(depth + 1, r.randint(1, 2))
        else:  # while: a counter that only the loop halves, so it always ends
            var = self.new_name()
            self.emit(depth, f"{var} = abs({self.operand()})")
            self.vars[var] = "int"
            self.frozen.add(var)
            self.emit(depth, f"while {var} > 0:")
            self.loops += 1
            self.scoped_block(depth + 1, r.randint(1, 2))
            self.loops -= 1
            self.emit(depth + 1, f"{var} = {var} // {r.randint(2, 3)}")

    def loop_body(self, depth: int, var: str, kind: str) -> None:
        self.vars[var] = kind
        self.frozen.add(var)
        self.loops += 1
        self.scoped_block(depth + 1, self.rng.randint(1, 3))
        self.loops -= 1
        # the loop variable stays readable after the loop only in Python; we drop it, so a
        # zero-iteration loop can never leave a name unbound for a later statement
        del self.vars[var]

    def scoped_block(self, depth: int, n: int) -> None:
        """A nested block: names first bound inside it are dropped after it (they may be
        unbound when the block does not run)."""
        before = dict(self.vars)
        self.statement(depth)  # a block always holds at least one statement
        self.block(depth, n - 1)
        self.vars = {k: v for k, v in self.vars.items() if k in before}


def _literal_input(rng: random.Random, kind: str) -> str:
    if kind == "int":
        return str(rng.randint(0, INT_LIMIT))
    if kind == "str":
        return repr("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, MAX_INPUT_LEN))))
    items = [rng.randint(0, INT_LIMIT) for _ in range(rng.randint(0, MAX_INPUT_LEN))]
    return repr(items)


def generate_program(
    rng: random.Random, *, max_depth: int = 2, max_statements: int = 8
) -> ExecProgram:
    """One program from `rng`'s next draws: `def f(x)` (and perhaps a helper `g(a, b)`) of
    up to `max_statements` statements nested `max_depth` deep, and a call with a literal.

    The answer is a variable the body changed after its first assignment, preferring those
    written inside a loop (so that the executed steps matter to it); a draw with none such is
    discarded and drawn again (from the same stream, so still deterministic)."""
    while True:
        program = _draw_program(rng, max_depth, max_statements)
        if program is not None:
            return program


def _draw_program(rng: random.Random, max_depth: int, max_statements: int) -> ExecProgram | None:
    w = _Writer(rng, max_depth, max_statements)
    head: list[str] = []
    if rng.random() < 0.3:
        w.helper = True
        k, m = rng.randint(2, 9), rng.randint(7, 97)
        body = rng.choice(
            (
                f"    return (a * {k} + b) % {m}",
                "    if a > b:\n        return a - b\n    return b - a + 1",
                f"    return max(a, b) % {m} + min(a, b)",
            )
        )
        head = ["def g(a, b):", body, ""]
    kind = rng.choice(("int", "str", "list"))
    w.vars["x"] = kind
    w.frozen.add("x")  # the argument is read only: a list argument is never mutated
    w.vars["v0"] = kind  # a working copy that the body changes
    w.wrote("v0")
    w.emit(0, "v0 = list(x)" if kind == "list" else "v0 = x")
    w.block(0, rng.randint(2, max_statements))
    changed = [n for n in w.vars if w.writes.get(n, 0) >= 2 and n not in w.frozen]
    if not changed:
        return None
    changed.sort(key=lambda n: (n not in w.in_loop, -w.writes[n], n))
    result = changed[0] if rng.random() < 0.7 else rng.choice(changed)
    if len(changed) > 1 and rng.random() < 0.25:
        other = rng.choice([n for n in changed if n != result])
        result = f"({result}, {other})"
    w.emit(0, f"return {result}")
    code = "\n".join([*head, "def f(x):", *w.lines]) + "\n"
    return ExecProgram(code=code, call=f"f({_literal_input(rng, kind)})")


def generate_programs(
    seed: int, count: int, *, max_depth: int = 2, max_statements: int = 8
) -> Iterator[ExecProgram]:
    """`count` programs from one seed, the same on every machine (only `random.Random`'s
    documented, version-stable integer draws and string formatting are used)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield generate_program(rng, max_depth=max_depth, max_statements=max_statements)


# ------------------------------------------------------------------------------------ splits


def bucket_of(steps: int, edges: Sequence[int]) -> str:
    """The difficulty bucket name of a step count: `<=e` for the first edge e >= steps, else
    `>last`."""
    for edge in edges:
        if steps <= edge:
            return f"<={edge}"
    return f">{edges[-1]}"


def fingerprint_tasks(tasks: Sequence[ExecTask]) -> str:
    """sha256 of the tasks' JSON lines in order: the split's identity in the manifest."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(task.to_json().encode() + b"\n")
    return digest.hexdigest()


def write_tasks(path: Path, tasks: Sequence[ExecTask]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t.to_json() + "\n" for t in tasks))


def load_exec_tasks(folder: str | Path, split: str) -> list[ExecTask]:
    """The tasks of a built split (`<folder>/<split>.jsonl`, written by the build)."""
    path = Path(folder) / f"{split}.jsonl"
    if not path.is_file():
        manifest = Path(folder) / "meta.json"
        known = sorted(json.loads(manifest.read_text())["splits"]) if manifest.is_file() else []
        raise FileNotFoundError(
            f"{path} does not exist (splits here: {known or 'none'}); build the benchmark with "
            "`python scripts/build_exec_benchmark.py --out FOLDER`"
        )
    return [ExecTask(**json.loads(line)) for line in path.read_text().splitlines() if line]


def load_exec_problems(folder: str | Path, split: str) -> list[CodeExecutionProblem]:
    """A built split as code-execution problems, each labelled with its step bucket (the
    manifest's edges)."""
    manifest = Path(folder) / "meta.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} does not exist: not an exec benchmark folder; build one with "
            "`python scripts/build_exec_benchmark.py --out FOLDER`"
        )
    edges = json.loads(manifest.read_text())["edges"]
    return [task.problem(edges) for task in load_exec_tasks(folder, split)]


__all__ = [
    "ALPHABET",
    "GENERATOR_VERSION",
    "ExecProgram",
    "ExecTask",
    "bucket_of",
    "fingerprint_tasks",
    "generate_program",
    "generate_programs",
    "load_exec_problems",
    "load_exec_tasks",
    "write_tasks",
]
