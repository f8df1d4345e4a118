"""Per-program cgroups (pids, memory, cpu) when this process may create them, and the sweep of
what evaluators killed outright left behind (their cgroups and the fallback's temp folders)."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from hrm_codegen.evaluation.sandbox.limits import MAX_PROCESSES

_CGROUP_PREFIX = "hrm-codegen-sandbox-"  # then the evaluator's pid and a random suffix
_WORKDIR_PREFIX = "hrm-sandbox-"  # fallback backend's temp folders: the same


def _owner_is_gone(name: str, prefix: str) -> bool:
    """Whether the evaluator whose pid follows `prefix` in `name` has exited."""
    try:
        os.kill(int(name[len(prefix) :].split("-")[0]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not our naming, or alive under another user
        pass
    return False


def _remove_stale_workdirs() -> None:
    """Temp folders of fallback programs whose evaluator was killed before it could clean up."""
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        if _owner_is_gone(path.name, _WORKDIR_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


# Limit files that prove a controller is usable in a cgroup folder, per hierarchy kind.
_LIMIT_FILES = {
    "pids": ("pids.max",),
    "memory": ("memory.limit_in_bytes",),
    "cpu": ("cpu.shares",),
    "v2": ("pids.max",),
}
_KIND_OF_LIMIT_FILE = {"pids.max": "pids", "memory.limit_in_bytes": "memory", "cpu.shares": "cpu"}


def _cgroup_dirs() -> list[tuple[Path, tuple[str, ...]]]:
    """(this process's cgroup folder, limit files) for each pids, memory, cpu or v2 hierarchy."""
    mounts: dict[str, tuple[str, str]] = {}  # hierarchy kind -> (mount root, mount point)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, (fstype, _source, options) = left.split(), right.split()[:3]
                kinds = ["v2"] if fstype == "cgroup2" else options.split(",")
                for kind in kinds if fstype in ("cgroup", "cgroup2") else []:
                    mounts.setdefault(kind, (fields[3], fields[4]))
        with open("/proc/self/cgroup") as f:
            membership = [line.rstrip("\n").split(":", 2) for line in f]
    except (OSError, ValueError):
        return []
    found = []
    for _, controllers, path in membership:
        for kind in controllers.split(",") if controllers else ["v2"]:
            if kind not in _LIMIT_FILES or kind not in mounts:
                continue
            root, mount_point = mounts[kind]
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            found.append((Path(mount_point + relative.rstrip("/")), _LIMIT_FILES[kind]))
    return found


class Cgroups:
    """One child cgroup per program (per worker's sandbox in the fork-server mode) under a parent
    made for this run; cleaned up on close.

    The pids limit is what stops a fork bomb when we run as root (RLIMIT_NPROC is not enforced
    for uid 0), and the memory limit bounds a program's whole process tree, not each process.
    A cpu cgroup per program (equal weights, no limit) shares the cores between programs, not
    between processes: without it a program whose children each start a session (and so a
    scheduler autogroup) of their own takes the cores from the honest programs next to it and
    makes them time out. Joining it is best effort; pids and memory are required. The parent
    weighs as much as `workers` plain processes against the rest of the machine, as the
    programs' sessions did before they were grouped.
    """

    def __init__(self, memory_mb: int, max_processes: int = MAX_PROCESSES, workers: int = 1):
        self.limits = {
            "pids.max": str(max_processes),
            "memory.limit_in_bytes": str(memory_mb << 20),
            "memory.memsw.limit_in_bytes": str(memory_mb << 20),
            "memory.max": str(memory_mb << 20),
            "memory.swap.max": "0",
        }
        self.parents: list[Path] = []
        self.kinds: set[str] = set()
        self.best_effort: set[Path] = set()  # parents whose children a program may fail to join
        self._count = 0
        self._lock = threading.Lock()
        self._made: list[Path] = []
        for folder, limit_files in _cgroup_dirs():
            self._remove_stale(folder)
            parent = folder / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            try:
                parent.mkdir()
                self._made.append(parent)
                if not all((parent / name).exists() for name in limit_files):
                    # cgroup v2: controllers reach our children only if enabled in the parent;
                    # one at a time, as a write naming an unavailable controller fails whole.
                    for controller in ("pids", "memory", "cpu"):
                        with contextlib.suppress(OSError):
                            (parent / "cgroup.subtree_control").write_text(f"+{controller}")
                probe = parent / "probe"
                probe.mkdir()
                usable = all((probe / name).exists() for name in limit_files)
                probe.rmdir()
            except OSError:
                continue
            if usable:
                self.parents.append(parent)
                weights = {"cpu.shares": 1024 * workers, "cpu.weight": min(10000, 100 * workers)}
                for name, weight in weights.items():
                    with contextlib.suppress(OSError):
                        if (parent / name).exists():
                            (parent / name).write_text(str(min(weight, 262144)))
                kind = _KIND_OF_LIMIT_FILE[limit_files[0]]
                self.kinds.add(kind)
                if kind == "cpu":
                    self.best_effort.add(parent)
        atexit.register(self.close)

    @classmethod
    def _remove_stale(cls, folder: Path) -> None:
        """Remove cgroups left by evaluators that were killed (atexit never ran for them)."""
        try:
            stale = list(folder.glob(f"{_CGROUP_PREFIX}*"))
        except OSError:
            return
        for parent in stale:
            if not _owner_is_gone(parent.name, _CGROUP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                children = [child for child in parent.iterdir() if child.is_dir()]
                cls.kill(children)
                cls.remove([*children, parent])

    @property
    def limits_processes(self) -> bool:
        return "pids" in self.kinds

    def create(self) -> list[Path]:
        """Fresh child cgroups for one program, limits written; [] when none could be made."""
        with self._lock:
            self._count += 1
            name = f"p{self._count}"
        children = []
        for parent in self.parents:
            child = parent / name
            try:
                child.mkdir()
                for limit_file, value in self.limits.items():
                    if (child / limit_file).exists():
                        (child / limit_file).write_text(value)
            except OSError:
                self.remove([child])
                continue
            children.append(child)
        return children

    @staticmethod
    def kill(children: list[Path]) -> None:
        """SIGKILL every process still in the program's cgroups (escaped daemons included)."""
        for child in children:
            kill_file = child / "cgroup.kill"
            for _ in range(50):
                try:
                    if kill_file.exists():
                        kill_file.write_text("1")
                    pids = [int(p) for p in (child / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.002)

    @staticmethod
    def out_of_memory(children: list[Path]) -> bool:
        """Whether the kernel OOM-killed something in the program's memory cgroup."""
        for child in children:
            for events in ("memory.events", "memory.oom_control"):
                try:
                    for line in (child / events).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
                except (OSError, ValueError):
                    continue
        return False

    @staticmethod
    def oom_kills(children: list[Path]) -> int:
        """How many processes the kernel OOM-killed in these cgroups so far (a running count)."""
        total = 0
        for child in children:
            for events in ("memory.events", "memory.oom_control"):
                try:
                    for line in (child / events).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            total += int(value)
                except (OSError, ValueError):
                    continue
        return total

    @staticmethod
    def remove(children: list[Path]) -> None:
        for child in children:
            for _ in range(100):  # processes may take a moment to leave after SIGKILL
                try:
                    child.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)

    def close(self) -> None:
        for parent in self._made:
            if parent.exists():
                self.remove([p for p in parent.iterdir() if p.is_dir()])
                self.remove([parent])
        self.parents, self._made = [], []
