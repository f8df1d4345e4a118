"""Run one attempt's test command in a throwaway folder, sandboxed, with a wall-clock limit.

Each attempt gets a fresh temporary folder (`Workspace`): the exercise copy and writable
caches (HOME, the build folders, GOCACHE, ...) live in it. Under bubblewrap (the base
command of `sandbox.bwrap_status()`) that folder is the only writable place besides the
sandbox's private /tmp; the rest of the file system is read-only, there is no network, and
toolchains hidden with $HOME (rustup, the jest cache) are bound back read-only inside the
workspace. On timeout the whole process group is killed. Output is capped while it is read,
then trimmed of timings and absolute paths, so that a try-2 prompt does not depend on the
machine or the clock.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hrm_codegen.evaluation.sandbox import SandboxUnavailableError, SandboxWarning, bwrap_status

DEFAULT_TEST_TIMEOUT_S = 180.0
OUTPUT_LIMIT_BYTES = 1 << 20  # kept while reading; the rest is drained and dropped
PROMPT_OUTPUT_CHARS = 8000  # test output shown back to the model on try 2
SANDBOXES = ("auto", "bwrap", "none-unsafe")
_TOOLS = ".tools"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TIMING = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|µs|us|ns)\b|(?<![\w.])\d+\.\d+\s?(?:s|sec|secs|seconds)\b"
)


@dataclass
class CommandResult:
    """What a test command did: exit code (None if killed), capped output, time taken."""

    exit_code: int | None
    output: str
    timed_out: bool
    duration: float
    output_truncated: bool = False


def resolve_sandbox(sandbox: str = "auto") -> str:
    """`bwrap` or `none-unsafe`: the isolation the test commands will actually get.

    `bwrap` without a working bubblewrap is an error; `auto` falls back to `none-unsafe`,
    which warns: the tests then run with only a timeout and a process-group kill.
    """
    if sandbox not in SANDBOXES:
        raise ValueError(f"--sandbox {sandbox!r} unknown; use one of {SANDBOXES}")
    if sandbox == "none-unsafe":
        warnings.warn(
            "Polyglot tests run without a sandbox (--sandbox none-unsafe): responses can read "
            "and write your files and use the network",
            SandboxWarning,
            stacklevel=2,
        )
        return sandbox
    base, reason = bwrap_status()
    if base is not None:
        return "bwrap"
    if sandbox == "bwrap":
        raise SandboxUnavailableError(f"--sandbox bwrap: {reason}")
    warnings.warn(
        f"bubblewrap unavailable ({reason}); Polyglot tests run WITHOUT a sandbox",
        SandboxWarning,
        stacklevel=2,
    )
    return "none-unsafe"


def _bwrap_prefix() -> list[str]:
    """bubblewrap's base command without its payload and without its working directory."""
    base, reason = bwrap_status()
    if base is None:
        raise SandboxUnavailableError(reason)
    options = base[: base.index("--")] if "--" in base else list(base)
    prefix: list[str] = []
    skip = False
    for position, option in enumerate(options):
        if skip:
            skip = False
            continue
        if option == "--chdir" and position + 1 < len(options):
            skip = True  # we set our own
            continue
        prefix.append(option)
    return prefix


def trim_output(text: str, paths: Mapping[str, str] = {}, limit: int = PROMPT_OUTPUT_CHARS) -> str:  # noqa: B006
    """`text` without timings, with each path in `paths` replaced by its stand-in, and cut
    to `limit` characters (the start and, mostly, the end, where failures are summed up)."""
    for path, stand_in in sorted(paths.items(), key=lambda item: -len(item[0])):
        path = path.rstrip("/")
        text = text.replace(path + "/", stand_in + "/").replace(path, stand_in)
    text = _TIMING.sub("<time>", _ANSI.sub("", text))
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    if len(text) > limit:
        head = limit // 5
        tail = limit - head
        cut = len(text) - head - tail
        text = f"{text[:head]}\n... ({cut} characters cut) ...\n{text[-tail:]}"
    return text


def _hidden_in_sandbox(path: str) -> bool:
    """Whether bubblewrap's base command hides `path` ($HOME, /tmp and /run are replaced)."""
    home = os.path.realpath(os.path.expanduser("~"))
    roots = ["/tmp", "/run"] + ([home] if home != "/" else [])
    return any(path == root or path.startswith(root + os.sep) for root in roots)


class Workspace:
    """A fresh temporary folder for one attempt: `<name>/` (the exercise copy), `cache/`
    (writable toolchain state) and the read-only toolchain mounts, removed on exit."""

    def __init__(self, sandbox: str, name: str = "exercise", parent: str | None = None):
        self.sandbox = sandbox
        self.root = Path(tempfile.mkdtemp(prefix="hrm-polyglot-", dir=parent)).resolve()
        # named as the exercise: Exercism's CMakeLists derive the target from the folder name
        self.exercise = self.root / name
        self.cache = self.root / "cache"
        self.cache.mkdir()
        self.mounts: dict[str, str] = {}  # host folder -> where the command sees it
        self.writable_mounts: dict[str, str] = {}  # the same, bound read-write

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def tool(self, host_dir: str | Path, label: str) -> str:
        """Where the command sees `host_dir` (bound read-only under bubblewrap)."""
        host = os.path.realpath(host_dir)
        if self.sandbox != "bwrap" or not _hidden_in_sandbox(host):
            return host
        if host not in self.mounts:
            self.mounts[host] = str(self.root / _TOOLS / label)
        return self.mounts[host]

    def shared(self, host_dir: str | Path, label: str) -> str:
        """Where the command sees `host_dir`, a folder shared by attempts, bound read-write."""
        host = os.path.realpath(host_dir)
        if self.sandbox != "bwrap":
            return host
        return self.writable_mounts.setdefault(host, str(self.root / _TOOLS / label))

    def stand_ins(self) -> dict[str, str]:
        """Absolute paths of this workspace -> short names, for `trim_output`."""
        names = {str(self.exercise): ".", str(self.cache): "<cache>"}
        for host, seen in self.mounts.items():
            names[seen] = names[host] = "<toolchain>"
        for host, seen in self.writable_mounts.items():
            names[seen] = names[host] = "<cache>"
        names[str(self.root)] = "<workspace>"
        return names

    def run(
        self,
        script: str,
        env: Mapping[str, str],
        *,
        timeout: float = DEFAULT_TEST_TIMEOUT_S,
        output_limit: int = OUTPUT_LIMIT_BYTES,
    ) -> CommandResult:
        """Run the shell `script` in `exercise/` with exactly `env` (plus PATH defaults)."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.cache / "home"),
            "TMPDIR": str(self.cache / "tmp"),
            **env,
        }
        for name in ("HOME", "TMPDIR"):
            Path(env[name]).mkdir(parents=True, exist_ok=True)
        payload = ["/bin/sh", "-c", script]
        if self.sandbox == "bwrap":
            argv = _bwrap_prefix() + ["--bind", str(self.root), str(self.root)]
            for host, seen in self.mounts.items():
                argv += ["--ro-bind", host, seen]
            for host, seen in self.writable_mounts.items():
                argv += ["--bind", host, seen]
            for name, value in env.items():
                argv += ["--setenv", name, value]
            argv += ["--chdir", str(self.exercise), "--", *payload]
            popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            argv, popen_env = payload, dict(env)
        return _run_capped(argv, popen_env, str(self.exercise), timeout, output_limit)


def _run_capped(
    argv: list[str], env: dict[str, str], cwd: str, timeout: float, output_limit: int
) -> CommandResult:
    """Run argv in a new session; kill its process group on timeout; keep `output_limit`
    bytes of stdout+stderr."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        return CommandResult(None, f"could not start the test command: {error}", False, 0.0)
    chunks: list[bytes] = []
    kept = [0, False]  # bytes kept, truncated

    def drain() -> None:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else b""
            if not chunk:
                return
            room = output_limit - kept[0]
            if room > 0:
                chunks.append(chunk[:room])
                kept[0] += min(room, len(chunk))
            if len(chunk) > max(room, 0):
                kept[1] = True

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed_out = False
    try:
        exit_code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        exit_code = None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers too, after a normal exit
        proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    duration = time.monotonic() - start
    output = b"".join(chunks).decode("utf-8", errors="replace")
    if timed_out:
        output += f"\n(the tests were stopped after the {timeout:g} s time limit)"
    return CommandResult(exit_code, output, timed_out, duration, kept[1])
