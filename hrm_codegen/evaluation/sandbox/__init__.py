"""Run untrusted Python programs and judge whether they ran to the end.

Every generated program is treated as hostile. Each one runs in its own fresh interpreter
(`python -I -S`; by default a fresh fork of a pristine one, see Fork-server mode below), with
the `bwrap` backend inside bubblewrap: the root file system read-only,
$HOME and /run hidden, a private size-limited tmpfs as cwd, new user, PID, network, IPC and UTS
namespaces, no capabilities, `--die-with-parent`, /proc/keys and /proc/key-users unreadable.
For both backends: rlimits (address space, CPU seconds, file size, processes), a pids, memory
and cpu cgroup per program when this process may create them (root; the cpu one shares the cores
fairly between programs), a wall-clock timeout that kills the whole process group, stdin closed,
a fixed minimal environment, stdout/stderr read with a cap, and a seccomp filter that refuses
the kernel keyring system calls (add_key, request_key, keyctl; x86_64 and aarch64). Kernel keys
belong to users, not namespaces: without the filter a sandboxed program holds the session
keyring it inherited and reaches the invoking user's keyrings by serial number, so it could read
their keys or leave one behind (tests/test_sandbox_hostile.py shows both ways closed).

How a pass is recognised. The program text never contains the verdict secret: a small bootstrap
(`bootstrap.py`, compiled here and sent as a code object ahead of everything else on stdin; only a
short stub is on the command line) reads a per-program random key and sealed token, the limits
and the program from a pipe on stdin, replaces stdin by /dev/null, and `exec`s the program as
`__main__`. Only when `exec` returns (every statement, tests included, ran without an exception)
in the process that started it does it unseal the token and write it as the last stdout line,
then `os._exit(0)`. A pass needs exit status 0 *and* that token, so `exit(0)`, `os._exit(0)`,
`raise SystemExit`, `atexit` hooks, a killed parent, a replaced `sys.stdout` or a forked child
that reaches the end while its parent exits 0 can never fake one; the token is not in the
program file, argv, /proc/self/cmdline, the environment or stdin.

Tests that cannot be made to lie (`SandboxProgram`, what the evaluator runs). The candidate runs
first; the tests then run against the built-ins, modules, module functions and classes as they
were before the candidate ran (put back before the tests and around every call the tests make),
in a fresh namespace where the candidate's functions are wrapped, and every comparison of the
tests first checks that both sides are exact built-in value types (recursively), as is every
value a candidate function returns. So an `__eq__` that is always true, int/str/list/dict/set
subclasses that override comparison or hashing, objects that pretend to be numbers to `abs`,
`math.isclose` or `round`, replaced built-ins (`abs`, `all`, `isinstance`, `sorted`, `len`...),
replaced or patched modules the tests import (`math.isclose = ...`, `sys.modules["math"] = ...`,
a stdlib function's `__code__`), names rebound after the tests looked them up and a `settrace`
hook that jumps over asserts all fail (tests/hostile/trusted_*.py), while honest programs keep
their verdicts (every reference solution of MBPP, sanitized MBPP and HumanEval passes).

What this does not cover. A program written against this evaluator can still reach the
bootstrap's and the tests' own objects from inside the interpreter: walking frames
(`sys._getframe`, a traceback's `tb_frame`), `gc.get_objects()` or `ctypes` reach the tests'
namespace and the token-unsealing locals (and so can forge a pass), and can patch a built-in
type's slots in memory. Code the candidate runs without a call of the tests (a property, an
operator of its own class touched by the tests, a `__del__`, a thread it left running) can change
state between two of the tests' calls, which then sees it until the next call puts it back; a
module the candidate loaded itself (not imported by the tests) is not guarded, nor are the
internals of a stdlib module the tests do not import themselves (`re._compiler` is guarded,
being a submodule of `re`; `enum`, which `re` uses, is put back only before the tests start). A
plain-str program runs candidate and tests in one namespace, with none of the above. Programs can
still read the tests from their own source file, or try answers in forked copies until one gets
through: the verdict means "the tests ran to the end comparing trusted values", not "the tests
are complete". The rest of the file system stays readable, and Unix sockets on it outside /run,
/tmp, $HOME and /dev stay connectable. A program can stop the sandbox's own init (ptrace) and so
turn its pass into a timeout, never the reverse. Without a pids cgroup, root's processes are not
limited by RLIMIT_NPROC, so a fork bomb then lives until its timeout (a warning says so).

Backends: `bwrap` (fails if bubblewrap cannot run), `none-unsafe` (rlimits, timeout,
process-group kill and a parent-death signal only: files and network are NOT isolated, and as root
a program may raise its own rlimits), `auto` (bwrap when it runs, else `none-unsafe` with a loud
warning, once).

Evaluators killed outright (SIGKILL, OOM) take their programs with them (`--die-with-parent`, or
PR_SET_PDEATHSIG in the fallback); the cgroups they leave behind are removed by the next run.

Stdin/stdout programs (`run_stdio_programs`, LiveCodeBench): one sandbox per job, a fresh forked
child per test with the test's input as its stdin; outputs are compared outside the sandbox.

Throughput: `workers` programs run at a time, and up to twice as many more start up or tear down
their sandbox meanwhile, so the ~30 ms of sandbox and interpreter start-up overlaps with work.

Fork-server mode (`mode="fork"`, or HRM_CODEGEN_SANDBOX_MODE=fork; `mode="process"` for a fresh
sandbox per program; by default, `auto`, whichever `forkserver.choose_mode` timed faster on this
machine, once per process; `bwrap` only, see forkserver.py): one sandbox per worker, started once, whose trusted server (the
sandbox's pid 1, non-dumpable: programs can neither signal nor ptrace it) forks a fresh child per program running the same bootstrap and token protocol; between
programs every other process in the sandbox is killed and /tmp, /dev/shm and SysV IPC are
wiped, and a sandbox that cannot be put back, stalls, floods or dies is replaced (a program
whose server died is failed). Changed there: cgroups are per worker (the server counts against
the memory cap; RLIMIT_AS still caps each process), POSIX message queues are refused, and the
network, IPC and UTS namespaces are the worker's, not the program's (nothing in them outlives a
program; keyrings are refused to every program, see above). A child costs a page fault for every
page of the server it writes to, so the server makes that few: the tests' guard records the loaded
modules once in the server, its objects are frozen out of the collector's reach, huge pages are
off, the compiler is warmed. 3-4x fewer milliseconds per HumanEval program on our 2-core VMs; where
page faults are dear the fresh sandbox may win, which `auto` measures.
"""

from hrm_codegen.evaluation.sandbox.cgroups import (
    _CGROUP_PREFIX,
    _WORKDIR_PREFIX,
    _cgroup_dirs,
    _remove_stale_workdirs,
)
from hrm_codegen.evaluation.sandbox.cgroups import Cgroups as _Cgroups
from hrm_codegen.evaluation.sandbox.limits import (
    BACKENDS,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_FILE_MB,
    MAX_OUTPUT_BYTES,
    MAX_PROCESSES,
    STATUSES,
)
from hrm_codegen.evaluation.sandbox.pool import default_workers, run_program, run_programs
from hrm_codegen.evaluation.sandbox.runner import (
    ExecResult,
    SandboxProgram,
    SandboxUnavailableError,
    SandboxWarning,
    bwrap_status,
    process_limit_in_force,
    resolve_backend,
)
from hrm_codegen.evaluation.sandbox.stdio import (
    STDIO_STATUSES,
    StdioJob,
    StdioResult,
    run_stdio_programs,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "MAX_FILE_MB",
    "MAX_OUTPUT_BYTES",
    "MAX_PROCESSES",
    "STATUSES",
    "STDIO_STATUSES",
    "ExecResult",
    "SandboxProgram",
    "SandboxUnavailableError",
    "SandboxWarning",
    "StdioJob",
    "StdioResult",
    "_CGROUP_PREFIX",
    "_Cgroups",
    "_WORKDIR_PREFIX",
    "_cgroup_dirs",
    "_remove_stale_workdirs",
    "bwrap_status",
    "default_workers",
    "process_limit_in_force",
    "resolve_backend",
    "run_program",
    "run_programs",
    "run_stdio_programs",
]
