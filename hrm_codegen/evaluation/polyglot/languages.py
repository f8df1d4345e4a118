"""Per-language test runs: finding the toolchain, preparing the tests, the test command.

Every language runs the tests the way its Exercism track means them, all tests enabled:
Python `pytest`; JavaScript jest (installed once into a cache folder by
`install_polyglot_toolchains`, used offline) with `xtest` turned into `test`; C++ CMake with
`EXERCISM_RUN_ALL_TESTS` (the exercise's CMakeLists builds and runs its tests); Rust
`cargo test --offline -- --include-ignored`; Go `go test ./...` with the module proxy off;
Java javac and the JUnit 5 console launcher from Debian's `junit5` jars, `@Disabled` removed.
A language whose toolchain is missing is `unavailable`, never failed.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hrm_codegen.evaluation.polyglot.exercises import Exercise
from hrm_codegen.evaluation.polyglot.runner import Workspace

JEST_PACKAGES = ("jest@29", "babel-jest@29", "@babel/core@7", "@babel/preset-env@7")
_JUNIT_JARS = ("/usr/share/java/junit-platform-console-standalone.jar",)
# Jars the Exercism Java tests may import besides JUnit, added to the class path when present.
_JAVA_EXTRA_JARS = ("/usr/share/java/assertj-core.jar", "/usr/share/java/byte-buddy.jar")


@dataclass(frozen=True)
class TestCommand:
    """A shell script run in the exercise copy, and the environment it needs."""

    script: str
    env: dict[str, str]


def polyglot_cache_dir() -> Path:
    """Where installed test runners live: $HRM_CODEGEN_POLYGLOT_CACHE, else the user cache."""
    override = os.environ.get("HRM_CODEGEN_POLYGLOT_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hrm_codegen" / "polyglot"


def jest_dir() -> Path:
    """The folder whose node_modules holds jest and babel."""
    return polyglot_cache_dir() / "jest"


_go_cache_lock = threading.Lock()


def _go_build_cache() -> str:
    with _go_cache_lock:
        return _new_go_build_cache()


@functools.cache
def _new_go_build_cache() -> str:
    """One Go build cache per process, shared by its test runs and removed at exit.

    `go test` vets and compiles the packages it imports; with a cold cache per run that costs
    seconds of CPU each time. Go's cache is keyed by content hashes, so sharing it between
    the attempts of one evaluation changes no verdict.
    """
    folder = tempfile.mkdtemp(prefix="hrm-polyglot-gocache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _find(program: str, *places: str) -> str | None:
    """`program` on PATH, else in one of the usual install folders."""
    found = shutil.which(program)
    if found:
        return found
    for place in places:
        candidate = os.path.join(os.path.expanduser(place), program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _works(argv: list[str], env: dict[str, str] | None = None) -> bool:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=60, check=False, env=env, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _rust_tools() -> tuple[str, str | None] | None:
    """(cargo, rustup home or None) when cargo and rustc work here."""
    cargo = _find("cargo", "~/.cargo/bin", "/usr/local/cargo/bin")
    if cargo is None:
        return None
    rustup_home = os.environ.get("RUSTUP_HOME") or next(
        (p for p in (os.path.expanduser("~/.rustup"), "/usr/local/rustup") if os.path.isdir(p)),
        None,
    )
    env = {"PATH": f"{os.path.dirname(cargo)}:/usr/bin:/bin", "HOME": os.path.expanduser("~")}
    if rustup_home:
        env["RUSTUP_HOME"] = rustup_home
    if not (_works([cargo, "--version"], env) and _works(["rustc", "--version"], env)):
        return None
    return cargo, rustup_home


def _java_tools() -> tuple[str, str, str] | None:
    javac = _find("javac", "/usr/lib/jvm/default-java/bin")
    java = _find("java", "/usr/lib/jvm/default-java/bin")
    junit = os.environ.get("HRM_CODEGEN_JUNIT_JAR") or next(
        (jar for jar in _JUNIT_JARS if os.path.isfile(jar)), None
    )
    if not (javac and java and junit and os.path.isfile(junit)):
        return None
    return javac, java, junit


@functools.cache
def toolchain_status(language: str) -> tuple[bool, str]:
    """(available, what is missing) for a language, probed once per process."""
    if language == "python":
        ok = _works([sys.executable, "-m", "pytest", "--version"])
        return ok, "" if ok else f"pytest is not installed for {sys.executable}"
    if language == "javascript":
        node = _find("node", "/usr/local/bin")
        jest = jest_dir() / "node_modules" / "jest" / "bin" / "jest.js"
        if node is None:
            return False, "node is not installed (apt-get install nodejs npm)"
        if not jest.is_file():
            return False, f"jest is not in {jest_dir()} (run scripts/setup_polyglot.py)"
        return True, ""
    if language == "cpp":
        if not (_find("c++") or _find("g++")) or not _find("cmake"):
            return False, "a C++ compiler and cmake are needed (apt-get install g++ cmake)"
        return True, ""
    if language == "rust":
        ok = _rust_tools() is not None
        return ok, "" if ok else "cargo/rustc not found (apt-get install cargo, or rustup)"
    if language == "go":
        go = _find("go", "/usr/local/go/bin", "/usr/lib/go/bin", "~/go/bin")
        ok = go is not None and _works([go, "version"])
        return ok, "" if ok else "go not found (apt-get install golang-go)"
    if language == "java":
        if _java_tools() is None:
            return (
                False,
                "javac/java or the JUnit 5 console jar missing (apt-get install "
                "default-jdk-headless junit5 libassertj-core-java)",
            )
        return True, ""
    return False, f"no test runner for language {language!r}"


def exercise_toolchain_status(exercise: Exercise) -> tuple[bool, str]:
    """`toolchain_status` of the exercise's language, plus what its tests import: the Exercism
    Java tests use AssertJ, which is a separate Debian package."""
    available, missing = toolchain_status(exercise.language)
    needs_assertj = exercise.language == "java" and any(
        "org.assertj" in exercise.read(name) for name in exercise.test_files
    )
    if available and needs_assertj and not os.path.isfile(_JAVA_EXTRA_JARS[0]):
        return False, "the tests use AssertJ (apt-get install libassertj-core-java)"
    return available, missing


# --------------------------------------------------------------------------------------------------
# Preparing the copy: all tests enabled


def _rewrite(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text(encoding="utf-8")
    new = change(text)
    if new != text:
        path.write_text(new, encoding="utf-8")


_XTEST = re.compile(r"\b(x)(test|it|describe)(\s*\()")
_DISABLED = re.compile(r"@Disabled(\s*\([^)]*\))?")


def enable_all_tests(exercise: Exercise, folder: Path) -> None:
    """Turn skipped tests on in the copy's test files (`xtest`, `@Disabled`)."""
    for name in exercise.test_files:
        path = folder / name
        if exercise.language == "javascript":
            _rewrite(path, lambda text: _XTEST.sub(r"\2\3", text))
        elif exercise.language == "java":
            _rewrite(path, lambda text: _DISABLED.sub("", text))


# --------------------------------------------------------------------------------------------------
# Test commands


def _path(*dirs: str) -> str:
    return ":".join([*dirs, "/usr/local/bin", "/usr/bin", "/bin"])


def test_command(exercise: Exercise, workspace: Workspace) -> TestCommand:
    """The command that runs `exercise`'s tests in `workspace.exercise`, all of them."""
    language, cache = exercise.language, workspace.cache
    quote = shlex.quote
    if language == "python":
        tests = " ".join(quote(name) for name in exercise.test_files)
        return TestCommand(
            f"{quote(sys.executable)} -m pytest -q -p no:cacheprovider --color=no {tests}",
            # plugins of the host's environment (hypothesis, ...) would only slow every run down
            {"PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    if language == "javascript":
        modules = workspace.tool(jest_dir(), "jest") + "/node_modules"
        config = {
            "rootDir": str(workspace.exercise),
            "testEnvironment": "node",
            "transform": {
                r"\.[cm]?jsx?$": [
                    f"{modules}/babel-jest",
                    {
                        "babelrc": False,
                        "configFile": False,
                        "presets": [
                            [f"{modules}/@babel/preset-env", {"targets": {"node": "current"}}]
                        ],
                    },
                ]
            },
        }
        node = _find("node", "/usr/local/bin")
        assert node is not None, "check toolchain_status first"
        node = workspace.tool(os.path.dirname(os.path.realpath(node)), "node") + "/node"
        script = (
            f"{quote(node)} {quote(modules + '/jest/bin/jest.js')} --ci --watchman=false --no-colors "
            f"--cacheDirectory {quote(str(cache / 'jest'))} --config {quote(json.dumps(config))}"
        )
        return TestCommand(
            script, {"NODE_PATH": modules, "CI": "1", "FORCE_COLOR": "0", "NO_COLOR": "1"}
        )
    if language == "cpp":
        build = quote(str(cache / "build"))
        script = (
            f"cmake -S . -B {build} -DEXERCISM_RUN_ALL_TESTS=1 -DCMAKE_BUILD_TYPE=Debug "
            f"> {build}.log 2>&1 || {{ cat {build}.log; exit 1; }}; "
            f"cmake --build {build} -- -j2"
        )
        return TestCommand(script, {"CMAKE_COLOR_DIAGNOSTICS": "OFF", "CLICOLOR": "0"})
    if language == "rust":
        tools = _rust_tools()
        assert tools is not None, "check toolchain_status first"
        cargo, rustup_home = tools
        env = {
            "PATH": _path(workspace.tool(os.path.dirname(cargo), "cargo-bin")),
            "CARGO_HOME": str(cache / "cargo"),
            "CARGO_TARGET_DIR": str(cache / "target"),
            "CARGO_TERM_COLOR": "never",
            "CARGO_INCREMENTAL": "0",
        }
        if rustup_home:
            env["RUSTUP_HOME"] = workspace.tool(rustup_home, "rustup")
        return TestCommand("cargo test --offline -q -- --include-ignored", env)
    if language == "go":
        go = _find("go", "/usr/local/go/bin", "/usr/lib/go/bin", "~/go/bin")
        assert go is not None, "check toolchain_status first"
        goroot = os.path.dirname(os.path.dirname(os.path.realpath(go)))
        env = {
            "PATH": _path(workspace.tool(goroot, "go") + "/bin"),
            "GOCACHE": workspace.shared(_go_build_cache(), "go-build"),
            "GOPATH": str(cache / "gopath"),
            "GOPROXY": "off",
            "GOFLAGS": "-mod=mod",
            "GOTOOLCHAIN": "local",
        }
        return TestCommand("go test ./...", env)
    if language == "java":
        tools = _java_tools()
        assert tools is not None, "check toolchain_status first"
        javac, java, junit = tools
        # a JDK under $HOME (sdkman, ...) is hidden in the sandbox: bind its home back
        jdk = os.path.dirname(os.path.dirname(os.path.realpath(javac)))
        javac = workspace.tool(jdk, "jdk") + "/bin/javac"
        java_real = os.path.realpath(java)
        if java_real.startswith(jdk + os.sep):
            java = workspace.tool(jdk, "jdk") + java_real[len(jdk) :]
        jars = [junit, *(jar for jar in _JAVA_EXTRA_JARS if os.path.isfile(jar))]
        classes = str(cache / "classes")
        tests = {n for n in exercise.test_files if n.endswith(".java")}
        sources = [
            str(p.relative_to(workspace.exercise))
            for p in sorted(workspace.exercise.rglob("*.java"))
            if not p.relative_to(workspace.exercise).parts[0].startswith(".")
        ]
        main = [s for s in sources if s not in tests and not s.startswith("src/test/")]
        test = [s for s in sources if s not in main]
        # One javac for the solution and the tests (one JVM start, the slow part), then JUnit's
        # console launcher. javac is short-lived: C1 only and the serial GC start it fastest. The
        # tests keep tiered compilation (C1 first, C2 for hot code): C1 alone made a compute-heavy
        # test take 2.3x the CPU time (29.5 s against 12.6 s), pushing slow-but-correct solutions
        # toward the 180 s limit, for no gain on short tests (tiered starts in C1 anyway).
        fast = "-J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC"
        script = (
            f"mkdir -p {classes} && "
            f"{quote(javac)} {fast} -encoding UTF-8 -cp {quote(':'.join(jars))} -d {classes} "
            f"{' '.join(map(quote, main + test))} && "
            f"{quote(java)} -XX:+UseSerialGC -jar {quote(junit)} "
            f"--class-path {quote(':'.join([classes, *jars[1:]]))} "
            "--scan-class-path --disable-banner --disable-ansi-colors --fail-if-no-tests "
            "--details=summary"
        )
        return TestCommand(script, {})
    raise ValueError(f"no test runner for language {language!r}")


# --------------------------------------------------------------------------------------------------
# Installing what Debian does not package


def install_polyglot_toolchains(target: str | Path | None = None, npm: str = "npm") -> Path:
    """Install jest and babel (for the JavaScript exercises) into `target` once, with npm.

    Run at setup time (`scripts/setup_polyglot.py`, `.ci/run`), never during an evaluation:
    the tests then use this folder offline. Returns the folder. The other toolchains come
    from the system's packages (g++ cmake nodejs npm cargo golang-go default-jdk-headless junit5
    libassertj-core-java).
    """
    folder = Path(target) if target is not None else jest_dir()
    if (folder / "node_modules" / "jest" / "bin" / "jest.js").is_file():
        return folder
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise FileNotFoundError(f"{npm} not found; install Node.js and npm (apt-get install npm)")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"name": "hrm-codegen-polyglot-jest", "private": True}))
    subprocess.run(
        [npm_path, "install", "--no-audit", "--no-fund", *JEST_PACKAGES],
        cwd=folder,
        check=True,
    )
    toolchain_status.cache_clear()
    return folder
