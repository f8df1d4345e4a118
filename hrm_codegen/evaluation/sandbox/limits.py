"""Limits and the fixed environment every sandboxed program gets (shared by all backends)."""

from __future__ import annotations

# HumanEval's harness uses 3 s per program; evalplus allows 4x each reference's own run time. The
# slowest reference solution (Mbpp/123) took 2.4-4.7 s on a busy 2-core VM, a hair under a 5 s
# limit; 10 s keeps every reference passing on a loaded machine and still ends an infinite loop
# quickly. The clock starts once the interpreter is up, not at queueing.
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 4096  # address space per process (RLIMIT_AS) and per program (memory cgroup)
MAX_PROCESSES = 64  # processes + threads per program (pids cgroup / RLIMIT_NPROC in the userns)
MAX_FILE_MB = 64  # largest file a program may write (RLIMIT_FSIZE)
TMPFS_MB = 256  # size of the private writable /tmp (bwrap backend)
SHM_MB = 64  # size of the private /dev/shm (bwrap backend; multiprocessing needs it)
# Per stream; a program that writes more is killed. Only a tail is kept in memory whatever the
# size, so the cap is about flooding (a reader thread busy for the whole timeout), and is set
# far above what a print loop can produce in a timeout: an honest chatty program still passes.
MAX_OUTPUT_BYTES = 128 << 20
TAIL_BYTES = 4096  # how much of the end of stdout / stderr is kept
STDERR_TAIL_LINES = 20
BACKENDS = ("auto", "bwrap", "none-unsafe")
STATUSES = ("passed", "failed", "timeout", "error")

STARTED = b"\x01"  # the bootstrap's first stdout byte: the sandbox came up and Python started
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    # glibc reserves 64 MiB of address space per thread arena, so under RLIMIT_AS a program could
    # start only a dozen threads; two arenas cap that cost whatever the thread count.
    "MALLOC_ARENA_MAX": "2",
    # numpy's BLAS would start a thread per core at import: past the process limit on a big
    # machine, and pointless when every core already runs a program.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
