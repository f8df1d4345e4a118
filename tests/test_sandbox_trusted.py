"""SandboxProgram: tests run against pristine state and compare trusted values, honest code passes.

The attacks themselves are in tests/hostile/trusted_*.py; here: the rewrite of the tests, line
numbers, and that ordinary Python in candidates and tests keeps its meaning.
"""

from __future__ import annotations

import marshal

import pytest

from hrm_codegen.data.tasks import CodeTask, build_program, program_parts
from hrm_codegen.evaluation.sandbox import ExecResult, SandboxProgram, run_programs
from hrm_codegen.evaluation.sandbox.trusted import (
    CALL_METHOD_NAME,
    CALL_NAME,
    COMPARE_NAME,
    prepare_tests,
)

# (candidate, tests, expected status, substring of the detail)
CASES = {
    # Line numbers are those of candidate + "\n" + tests: line 3 is the empty joining line.
    "failing_line_is_the_whole_files": (
        "def inc(x):\n    return x\n", "assert inc(1) == 1\nassert inc(1) == 2\n", "failed",
        "AssertionError at line 5: assert inc(1) == 2",
    ),
    "chains_short_circuit": (
        "def one():\n    return 1\n",
        "assert not (one() > 2 > undefined_name)\nassert 0 < one() <= 1 < 2\n", "passed", "",
    ),
    "frame_builtins_keep_their_meaning": (
        "def f():\n    return 3\n",
        "class Base:\n    def value(self):\n        return 1\n\n"
        "class Child(Base):\n    def value(self):\n        return super().value() + f()\n\n"
        "def scope():\n    x = 5\n    return locals()\n\n"
        "assert Child().value() == 4 and scope() == {'x': 5} and 'f' in dir() \n",
        "passed", "",
    ),
    "candidate_setup_survives": (
        "import sys\nsys.setrecursionlimit(5000)\n\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n",
        "assert depth(3000) == 3000\n", "passed", "",
    ),
    "helpers_and_globals_of_the_candidate": (
        "SCALE = 10\nimport math\n\ndef helper(x):\n    return x * SCALE\n\n"
        "def entry(x):\n    return helper(x) + math.floor(0.5)\n",
        "assert entry(2) == 20 and helper(1) == SCALE\n", "passed", "",
    ),
    "missing_entry_point": ("def other():\n    pass\n", "assert entry() == 1\n", "failed", "NameError"),
    "untrusted_failure_cannot_be_caught": (
        "class Liar:\n    def __eq__(self, other):\n        return True\n\n"
        "def f():\n    return Liar()\n",
        "try:\n    assert f() == 1\nexcept BaseException:\n    pass\n", "failed",
        "UntrustedValue: untrusted return type Liar from f()",
    ),
    "untrusted_value_in_a_comparison": (
        "class Box:\n    def __init__(self):\n        self.items = []\n\n"
        "class Liar:\n    def __eq__(self, other):\n        return True\n\n"
        "def fill(target):\n    target.append(Liar())\n",
        "values = []\nfill(values)\nassert values == [1]\n", "failed",
        "untrusted value type Liar in a comparison",
    ),
    "identity_checks_need_no_trust": (
        "class Thing:\n    pass\n\ndef make():\n    return None\n",
        "assert make() is None and Thing is not None\n", "passed", "",
    ),
    "iterators_and_views": (
        "def gen(n):\n    yield from range(n)\n\ndef upper(s):\n    return map(str.upper, s)\n\n"
        "def keys(d):\n    return d.keys()\n",
        "assert list(gen(3)) == [0, 1, 2] and ''.join(upper('ab')) == 'AB'\n"
        "assert sorted(keys({'b': 1, 'a': 2})) == ['a', 'b']\n",
        "passed", "",
    ),
    "regex_matches_are_truthy": (
        "import re\n\ndef starts_with_a(text):\n    return re.match('a', text)\n",
        "assert starts_with_a('abc')\nassert not starts_with_a('bc')\n", "passed", "",
    ),
    "counters_compare_as_dicts": (
        "from collections import Counter, OrderedDict, defaultdict, deque\n\n"
        "def counts(s):\n    return Counter(s)\n\ndef ordered():\n    return OrderedDict(a=1)\n\n"
        "def grouped():\n    d = defaultdict(list)\n    d['k'].append(1)\n    return d\n\n"
        "def queue():\n    return deque([1, 2])\n",
        "assert counts('aab') == {'a': 2, 'b': 1} and ordered() == {'a': 1}\n"
        "assert grouped() == {'k': [1]} and queue() == deque([1, 2])\n"
        "from collections import deque\n",
        "passed", "",
    ),
    # numpy's scalars are static C types (trusted); a class only named like one is not.
    "numpy_scalars": (
        "import numpy as np\n\ndef double(x):\n    return np.int64(x) * 2\n",
        "assert double(2) == 4 and [double(1)] == [2]\n", "passed", "",
    ),
    "fake_numpy_scalar": (
        "class int64(int):\n    __module__ = 'numpy'\n\n    def __eq__(self, other):\n"
        "        return True\n\ndef double(x):\n    return int64(0)\n",
        "assert double(2) == 4\n", "failed", "untrusted return type int64 from double()",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def verdicts() -> dict[str, ExecResult]:
    programs = [SandboxProgram(c, t, None) for c, t, _, _ in CASES.values()]
    results = run_programs(programs, timeout=20, memory_mb=512, progress=False)
    return dict(zip(CASES, results))


@pytest.mark.parametrize("name", list(CASES))
def test_verdicts(verdicts: dict[str, ExecResult], name: str) -> None:
    _, _, status, detail = CASES[name]
    result = verdicts[name]
    assert (result.status, detail in result.detail) == (status, True), (
        result.detail,
        result.stderr_tail[-500:],
    )


def test_prepare_tests_rewrites_comparisons_and_calls() -> None:
    prepared = prepare_tests("import math\nfrom os import path\nassert f(1) == 2 < x.y(3)\n", 5)
    assert prepared is not None
    code_bytes, modules = prepared
    assert modules == ("math", "os")
    code = marshal.loads(code_bytes)
    names, codes = set(), [code]
    while codes:  # the chain's right-hand sides are lambdas: nested code objects
        current = codes.pop()
        names.update(current.co_names)
        codes += [const for const in current.co_consts if hasattr(const, "co_names")]
    assert {COMPARE_NAME, CALL_NAME, CALL_METHOD_NAME} <= names
    assert code.co_filename == "program.py"
    assert min(line for _, _, line in code.co_lines() if line) == 5  # the tests' first line
    assert prepare_tests("assert (\n", 1) is None


def test_program_parts_join_to_build_program() -> None:
    mbpp = CodeTask(
        "Mbpp/1", "mbpp", "p", "", ("assert f() == 1",), "f", "SETUP = 1", ("import math",)
    )
    humaneval = CodeTask(
        "HumanEval/1", "humaneval", "def f():\n", "", ("def check(c):\n    pass",), "f"
    )
    for task in (mbpp, humaneval):
        candidate, tests, entry = program_parts(task, "    return 1\n")
        assert f"{candidate}\n{tests}" == build_program(task, "    return 1\n")
        assert entry == "f"
    assert program_parts(humaneval, "    return 1\n")[0] == "def f():\n    return 1\n"
    assert program_parts(mbpp, "x = 1")[1] == "SETUP = 1\nimport math\nassert f() == 1\n"


def test_sandbox_program_checks_its_fields() -> None:
    with pytest.raises(TypeError, match="SandboxProgram.tests is bytes"):
        SandboxProgram("pass", b"pass")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a Python identifier"):
        SandboxProgram("pass", "pass", "not valid")
    assert SandboxProgram("a = 1", "assert a == 1").text == "a = 1\nassert a == 1"


# Run in a forked child of the test process (the fork server's record sets builtins.exit):
# the server's record is made there, then two grandchildren build the tests' guard, without
# and with it, as a fresh interpreter and a fork server's child do. The guard must record the
# same state either way, put back the same, and copy far fewer of the parent's pages with it.
GUARD_COMPARISON = r"""
import gc, json, os, resource, sys
from hrm_codegen.evaluation.sandbox.bwrap import BOOTSTRAP_SOURCE

boot = {"__name__": "hrm_sandbox_bootstrap", "__builtins__": __builtins__}
exec(compile(BOOTSTRAP_SOURCE, "bootstrap.py", "exec"), boot)
import typing, math  # loaded before the record, as the server's preloads are
BASE = {}


def guard_summary(use_base):
    boot["_HRM_BASE"] = BASE if use_base else None
    main = type(sys)("__main__")
    sys.modules["__main__"] = main
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    guard = boot["_TrustedTests"](["json", "email.utils"], "f", main)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # threading's fork handler gives each child new locks: ids that differ between children
    rebound = id(getattr(sys.modules.get("threading"), "__dict__", None))
    namespaces = {
        str(key): sorted((name, id(value)) for name, value in recorded.items())
        for key, (_, recorded) in guard.namespaces.items()
        if key != rebound
    }
    functions = {}
    for group in guard.functions:
        for function, code, defaults, kwdefaults in group:
            functions[str(id(function))] = [id(code), id(defaults), id(kwdefaults)]
    classes = {}
    for group in guard.classes:
        for cls, recorded in group:
            classes[str(id(cls))] = sorted((name, id(value)) for name, value in recorded.items())
    import email, json as json_module
    json_module.dumps = None  # watched (the tests import json)
    typing.cast = None  # not watched, recorded by the server
    email.planted = 1  # a package loaded after the server's record
    sys.modules["json"] = "planted"
    import builtins
    builtins.planted = 1
    guard.restore()
    restored = [
        json_module.dumps is not None,
        typing.cast is not None,
        not hasattr(email, "planted"),
        sys.modules["json"] is json_module,
        not hasattr(builtins, "planted"),
    ]
    quick = {
        "names": sorted(guard.quick_names),
        "namespaces": sorted(id(namespace) for namespace, _ in guard.quick_namespaces),
        "functions": sorted(id(function) for function in guard.quick_functions),
        "classes": sorted(id(cls) for cls, _ in guard.quick_classes),
    }
    return {"faults": faults, "namespaces": namespaces, "functions": functions,
            "classes": classes, "restored": restored, "quick": quick,
            "untouched": guard.untouched()}


def compare():
    results = []
    for use_base in (False, True):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                data = json.dumps(guard_summary(use_base)).encode()
            except BaseException as error:
                data = json.dumps({"error": repr(error)}).encode()
            with os.fdopen(write_end, "wb") as f:
                f.write(data)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            results.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    print(json.dumps(results))


# Recorded last, filled in place: nothing of this module changes after the record.
BASE.update(boot["_hrm_record_base"]())
gc.freeze()
compare()
"""


@pytest.mark.parametrize("main_alias", [False, True], ids=["plain", "mp_main_alias"])
def test_a_fork_servers_child_guards_as_a_fresh_interpreter_does(main_alias: bool) -> None:
    """Also where multiprocessing aliases the server's `__main__` as `__mp_main__` (torch's
    import does): the server's main script is then recorded by both, else by neither."""
    import json
    import subprocess
    import sys

    script = GUARD_COMPARISON
    if main_alias:
        script = script.replace(
            "import typing, math",
            "import typing, math\nsys.modules['__mp_main__'] = sys.modules['__main__']",
        )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    fresh, forked = json.loads(done.stdout.splitlines()[-1])
    assert "error" not in fresh and "error" not in forked, (fresh, forked)
    for key in ("namespaces", "functions", "classes", "quick"):
        assert fresh[key] == forked[key], key
    assert fresh["restored"] == forked["restored"] == [True] * 5
    assert fresh["untouched"] and forked["untouched"]
    # Built over the server's record, the guard writes to far fewer of the parent's pages.
    assert forked["faults"] < 0.7 * fresh["faults"], (forked["faults"], fresh["faults"])
