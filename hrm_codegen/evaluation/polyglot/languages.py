"""Per-language test runs: finding the toolchain, preparing the tests, the test command.

Every language runs the tests the way its Exercism track means them, all tests enabled:
Python `pytest`; JavaScript jest (installed once into a cache folder by
`install_polyglot_toolchains`, used offline) with `xtest` turned into `test`; C++ CMake with
`EXERCISM_RUN_ALL_TESTS` (the exercise's CMakeLists builds and runs its tests); Rust
`cargo test --offline -- --include-ignored`; Go `go test ./...` with the module proxy off;
Java javac and the JUnit 5 console launcher from Debian's `junit5` jars, `@Disabled` removed.
A language whose toolchain is missing is `unavailable`, never failed; so is an exercise that needs
what this machine lacks (a crate, a jar, Boost, a newer Go), with the reason, so that no response
is failed for the machine's sake. `aider_compat` enables the tests as aider's harness does.
"""

from __future__ import annotations

import atexit
import functools
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hrm_codegen.evaluation.polyglot.exercises import Exercise
from hrm_codegen.evaluation.polyglot.runner import Workspace

try:  # Python 3.11+; on 3.10 tomli if installed, else crates are not checked (cargo reports)
    import tomllib
except ImportError:  # pragma: no cover
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

JEST_PACKAGES = ("jest@29", "babel-jest@29", "@babel/core@7", "@babel/preset-env@7")
_JUNIT_JARS = ("/usr/share/java/junit-platform-console-standalone.jar",)
# Jars the Exercism Java tests may import besides JUnit, added to the class path when present.
_JAVA_EXTRA_JARS = ("/usr/share/java/assertj-core.jar", "/usr/share/java/byte-buddy.jar")
# The libraries Exercism's build.gradle files declare: maven group:artifact -> (the package
# the code imports, the Debian jar and package providing it) or (package, None, why none does).
JAVA_LIBRARIES: dict[str, tuple[str, str | None, str]] = {
    "org.assertj:assertj-core": ("org.assertj", _JAVA_EXTRA_JARS[0], "libassertj-core-java"),
    "org.json:json": (
        "org.json",
        None,
        "Debian packages only Android's rewrite, libandroid-json-java, whose JSONException is "
        "checked: the exercise's code, written for json 20190722, does not compile against it",
    ),
    "io.reactivex.rxjava2:rxjava": ("io.reactivex", None, "Debian does not package RxJava 2"),
}
# AssertJ calls of the Exercism Java tests that older AssertJ jars lack (Debian 12 packages
# 3.14; the build.gradle files ask for 3.25): the call, a class of the jar that provides it.
ASSERTJ_APIS = {".hasDimensions(": "org/assertj/core/api/Object2DArrayAssert.class"}
# Where Debian installs the crate sources of its librust-*-dev packages.
DEBIAN_CARGO_REGISTRY = "/usr/share/cargo/registry"
# Standard library packages newer than Debian 12's Go 1.19, and the release that added them.
GO_STD_SINCE = {
    "cmp": (1, 21),
    "maps": (1, 21),
    "slices": (1, 21),
    "log/slog": (1, 21),
    "math/rand/v2": (1, 22),
    "iter": (1, 23),
    "unique": (1, 23),
}
# `--aider-compat`: aider's harness since 2025-02-06 (all C++ tests, Boost installed), or the
# one of the leaderboard's first rows (Dec 2024 - Feb 2025), whose C++ runs built without
# EXERCISM_RUN_ALL_TESTS and so ran only the tests ahead of that #if.
AIDER_COMPAT = ("2025-02", "2024-12")


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
            return False, (
                "a C++ compiler and cmake are needed (apt-get install g++ cmake "
                "libboost-date-time-dev)"
            )
        return True, ""
    if language == "rust":
        ok = _rust_tools() is not None
        return ok, "" if ok else (
            "cargo/rustc not found (apt-get install cargo, or rustup; the crates the exercises "
            "declare: apt-get install librust-time-dev librust-anyhow-dev librust-rand-dev)"
        )
    if language == "go":
        go = _go_binary()
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
    """`toolchain_status` of the exercise's language, plus what the exercise itself needs (its
    crates, jars, Boost, Go release): without them every response would fail for the machine's
    sake, so the exercise is `unavailable` with the reason instead."""
    available, missing = toolchain_status(exercise.language)
    if not available:
        return available, missing
    need = _exercise_needs(exercise, _tree_files(exercise.path))
    return (False, need) if need else (True, "")


def reference_status(exercise: Exercise) -> tuple[bool, str]:
    """`exercise_toolchain_status`, plus what the example solution alone needs (the crates of
    Rust's `.meta/Cargo-example.toml`, a Go package newer than this Go): a reference that cannot
    build here is not checked, and says why."""
    available, missing = exercise_toolchain_status(exercise)
    if not available:
        return available, missing
    files = [(name, exercise.read(name)) for name in exercise.example_files]
    cargo_example = exercise.path / ".meta" / "Cargo-example.toml"
    if exercise.language == "rust" and cargo_example.is_file():
        files.append(("Cargo.toml", cargo_example.read_text(encoding="utf-8")))
    need = _exercise_needs(exercise, files)
    return (False, f"the example solution {need}") if need else (True, "")


def _tree_files(folder: Path) -> list[tuple[str, str]]:
    """(name, text) of an exercise folder's files outside .meta/.docs that a language's needs
    are read from (sources, build files)."""
    wanted = {".go", ".mod", ".java", ".gradle", ".toml", ".txt"}
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.suffix in wanted and not relative.parts[0].startswith("."):
            found.append((relative.as_posix(), path.read_text(encoding="utf-8", errors="replace")))
    return found


def _exercise_needs(exercise: Exercise, files: Iterable[tuple[str, str]]) -> str:
    """What `files` need that this machine lacks, in words ("" when nothing)."""
    files = list(files)
    if exercise.language == "rust":
        missing = [m for name, text in files if name == "Cargo.toml" for m in missing_crates(text)]
        if missing:
            registry = cargo_registry()
            where = f"the local registry {registry}" if registry else "this machine (no registry)"
            return f"needs crates missing from {where}: {'; '.join(missing)}"
    if exercise.language == "go":
        have = go_version()
        need = go_needs(files)
        if have is not None and need is not None and need[0] > have:
            version, why = need
            return f"needs Go >= {version[0]}.{version[1]} ({why}); this Go is {have[0]}.{have[1]}"
    if exercise.language == "cpp":
        for component in _boost_components(files):
            if not _boost_present(component):
                package = "libboost-" + component.replace("_", "-") + "-dev"
                label = f"Boost {component}" if component else "Boost"
                return f"the build uses {label} (apt-get install {package})"
    if exercise.language == "java":
        for need in _java_libraries(files):
            if need not in JAVA_LIBRARIES:
                return f"needs the Java library {need} (no jar for it is known here)"
            _, jar, how = JAVA_LIBRARIES[need]
            if jar is None:
                return f"needs the Java library {need} ({how})"
            if not os.path.isfile(jar):
                return f"needs the Java library {need} (apt-get install {how})"
            if need == "org.assertj:assertj-core":
                sources = "".join(text for name, text in files if name.endswith(".java"))
                for call, provider in ASSERTJ_APIS.items():
                    if call in sources and not _jar_has(jar, provider):
                        return (
                            f"the tests call AssertJ's {call.strip('.(')}, which {jar} "
                            f"(AssertJ {_jar_version(jar)}) lacks"
                        )
    return ""


@functools.cache
def _jar_entries(jar: str) -> frozenset[str]:
    try:
        with zipfile.ZipFile(jar) as archive:
            return frozenset(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return frozenset()


def _jar_has(jar: str, entry: str) -> bool:
    return entry in _jar_entries(os.path.realpath(jar))


def _jar_version(jar: str) -> str:
    """The Bundle-Version (else Implementation-Version) of a jar's manifest, or "?"."""
    try:
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode("utf-8", errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return "?"
    match = re.search(r"^(?:Bundle|Implementation)-Version:\s*(\S+)", manifest, re.MULTILINE)
    return match[1] if match else "?"


# --------------------------------------------------------------------------------------------------
# What exercises need: Rust crates, Go releases, Boost, Java libraries


def cargo_registry() -> Path | None:
    """The folder of crate sources the Rust runs resolve from, offline ($HRM_CODEGEN_CARGO_REGISTRY,
    else Debian's librust-*-dev sources); None when absent."""
    folder = os.environ.get("HRM_CODEGEN_CARGO_REGISTRY") or DEBIAN_CARGO_REGISTRY
    return Path(folder) if os.path.isdir(folder) else None


_CRATE_DIR = re.compile(r"^(?P<name>.+?)-(?P<version>\d+\.\d+\.\d+)(?P<pre>-[\w.-]+)?$")
_COMPARATOR = re.compile(r"^(\^|~|=|>=|<=|>|<)?\s*(\d+|\*|x)(?:\.(\d+|\*|x))?(?:\.(\d+|\*|x))?")


def _crate_key(name: str) -> str:
    return name.lower().replace("_", "-")


@functools.cache
def _registry_crates(registry: str) -> dict[str, list[tuple[int, int, int]]]:
    """{crate: [versions]} of a directory registry (folders `<name>-<version>`)."""
    crates: dict[str, list[tuple[int, int, int]]] = {}
    for entry in os.scandir(registry):
        match = _CRATE_DIR.match(entry.name)
        if entry.is_dir() and match and not match["pre"]:
            version = tuple(int(part) for part in match["version"].split("."))
            crates.setdefault(_crate_key(match["name"]), []).append(version)  # type: ignore[arg-type]
    return crates


def _bump(parts: list[int]) -> tuple[int, int, int]:
    """The first version past `parts` (1.2 -> 1.3.0, 1 -> 2.0.0, 1.2.3 -> 1.2.4)."""
    bumped = parts[:-1] + [parts[-1] + 1]
    return tuple(bumped + [0] * (3 - len(bumped)))  # type: ignore[return-value]


def version_matches(requirement: str, version: tuple[int, int, int]) -> bool:
    """Whether `version` satisfies a Cargo version requirement ("0.3", "^1.2", "~0.4.1",
    ">=1, <2", "1.*"); a requirement this does not read counts as satisfied (cargo decides)."""
    for comparator in requirement.split(","):
        match = _COMPARATOR.match(comparator.strip())
        if not match:
            return True
        op = match[1] or "^"
        parts: list[int] = []
        for part in match.groups()[1:]:
            if part is None or part in "*x":
                op = "=" if part is not None and op == "^" else op
                break
            parts.append(int(part))
        if not parts:
            continue  # "*"
        full = tuple(parts + [0] * (3 - len(parts)))
        if op == ">=":
            ok = version >= full
        elif op == ">":
            ok = version > full if len(parts) == 3 else version >= _bump(parts)
        elif op == "<":
            ok = version < full
        elif op == "<=":
            ok = version <= full if len(parts) == 3 else version < _bump(parts)
        elif op == "=":
            ok = full <= version < _bump(parts)
        elif op == "~":
            ok = full <= version < _bump(parts[:2])
        else:  # caret: the leftmost non-zero part stays
            nonzero = next((i for i, part in enumerate(parts) if part), len(parts) - 1)
            ok = full <= version < _bump(parts[: nonzero + 1])
        if not ok:
            return False
    return True


def _cargo_dependencies(text: str) -> list[tuple[str, str]]:
    """(crate, version requirement) of a Cargo.toml's registry dependencies, dev and build
    ones included (`cargo test` builds them all)."""
    if tomllib is None:
        return []
    try:
        manifest = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []  # cargo says what is wrong
    kinds = ("dependencies", "dev-dependencies", "build-dependencies")
    tables = [manifest.get(kind, {}) for kind in kinds]
    for target in manifest.get("target", {}).values():
        tables += [target.get(kind, {}) for kind in kinds if isinstance(target, dict)]
    found = []
    for table in tables:
        for name, spec in table.items() if isinstance(table, dict) else ():
            if isinstance(spec, str):
                found.append((name, spec))
            elif isinstance(spec, dict) and not ({"path", "git"} & set(spec)):
                found.append((str(spec.get("package", name)), str(spec.get("version", "*"))))
    return found


def missing_crates(cargo_toml: str) -> list[str]:
    """The dependencies of a Cargo.toml that the local registry cannot satisfy, each with what
    to do ("time 0.3 (apt-get install librust-time-dev)", "regex 0.2 (the registry has 1.7.1)")."""
    registry = cargo_registry()
    crates = _registry_crates(str(registry)) if registry else {}
    missing = []
    for crate, requirement in _cargo_dependencies(cargo_toml):
        versions = crates.get(_crate_key(crate), [])
        if any(version_matches(requirement, version) for version in versions):
            continue
        if versions:
            have = ", ".join(".".join(map(str, v)) for v in sorted(versions))
            missing.append(f"{crate} {requirement} (the registry has {have})")
        else:
            missing.append(
                f"{crate} {requirement} (not in the registry; Debian's librust-"
                f"{_crate_key(crate)}-dev, if it packages a matching version)"
            )
    return missing


def _cargo_config(registry: str) -> str:
    """A CARGO_HOME config.toml that replaces crates.io by the local directory registry."""
    return (
        '[source.crates-io]\nreplace-with = "local-registry"\n\n'
        f"[source.local-registry]\ndirectory = {json.dumps(registry)}\n"
    )


def _go_binary() -> str | None:
    return _find("go", "/usr/local/go/bin", "/usr/lib/go/bin", "~/go/bin")


@functools.cache
def go_version() -> tuple[int, int] | None:
    """(major, minor) of the Go toolchain the tests use, None when there is none."""
    go = _go_binary()
    if go is None:
        return None
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    try:
        done = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"go(\d+)\.(\d+)", done.stdout.strip())
    return (int(match[1]), int(match[2])) if match else None


_GO_MOD_VERSION = re.compile(r"^go\s+(\d+)\.(\d+)", re.MULTILINE)
_GO_IMPORTS = re.compile(r"^import\s*(?:\(([^)]*)\)|[\w.]*\s*(\"[^\"]+\"))", re.MULTILINE)


def go_needs(files: Iterable[tuple[str, str]]) -> tuple[tuple[int, int], str] | None:
    """The newest Go release `files` need, and why: a go.mod's `go` directive, or the import of a
    standard package added after Go 1.19 (`slices`, `maps`, `cmp`, ...); None when no such need."""
    needs: list[tuple[tuple[int, int], str]] = []
    for name, text in files:
        if name.endswith("go.mod"):
            needs += [
                ((int(m[1]), int(m[2])), f"{name}: go {m[1]}.{m[2]}")
                for m in _GO_MOD_VERSION.finditer(text)
            ]
        elif name.endswith(".go"):
            for block, single in _GO_IMPORTS.findall(text):
                for package in re.findall(r'"([^"]+)"', block or single):
                    if package in GO_STD_SINCE:
                        needs.append((GO_STD_SINCE[package], f'{name} imports "{package}"'))
    return max(needs, default=None)


_BOOST = re.compile(r"find_package\s*\(\s*Boost\b([^)]*)\)", re.IGNORECASE)


def _boost_components(files: Iterable[tuple[str, str]]) -> list[str]:
    """The Boost components a CMakeLists.txt asks for ("" for Boost's headers alone)."""
    found: list[str] = []
    for name, text in files:
        if name.rsplit("/", 1)[-1] != "CMakeLists.txt":
            continue
        for arguments in _BOOST.findall(text):
            words = arguments.split()
            if "COMPONENTS" in words:
                rest = words[words.index("COMPONENTS") + 1 :]
                stop = {"OPTIONAL_COMPONENTS", "CONFIG", "NO_MODULE", "MODULE", "QUIET", "EXACT"}
                found += [
                    w for w in rest[: next((i for i, w in enumerate(rest) if w in stop), None)]
                ]
            else:
                found.append("")
    return found


def _boost_present(component: str) -> bool:
    """Boost's headers, and the library of `component` when one is named."""
    if not any(os.path.isdir(f"{root}/include/boost") for root in ("/usr", "/usr/local")):
        return False
    if not component:
        return True
    lib_dirs = ["/usr/lib", "/usr/lib64", "/usr/local/lib", *glob.glob("/usr/lib/*-linux-gnu*")]
    return any(glob.glob(f"{folder}/libboost_{component}.*") for folder in lib_dirs)


_GRADLE_DEPENDENCY = re.compile(
    r"^\s*(implementation|api|compile|testImplementation|testCompile)\s*\(?\s*[\"']"
    r"([\w.-]+):([\w.-]+)",
    re.MULTILINE,
)
_JAVA_IMPORT = re.compile(r"^import\s+(?:static\s+)?([\w.]+)", re.MULTILINE)


def _java_libraries(files: Iterable[tuple[str, str]]) -> list[str]:
    """The libraries (maven group:artifact) Java `files` need: each `implementation` of a
    build.gradle (the solution is meant to use it), and each known library whose package a
    source imports (AssertJ for most tests)."""
    needs: list[str] = []
    for name, text in files:
        if name.endswith(".gradle"):
            for kind, group, artifact in _GRADLE_DEPENDENCY.findall(text):
                if kind in ("implementation", "api", "compile"):
                    needs.append(f"{group}:{artifact}")
        elif name.endswith(".java"):
            for imported in _JAVA_IMPORT.findall(text):
                needs += [
                    library
                    for library, (package, _, _) in JAVA_LIBRARIES.items()
                    if imported.startswith(package + ".")
                ]
    return list(dict.fromkeys(needs))


# --------------------------------------------------------------------------------------------------
# Preparing the copy: all tests enabled


def _rewrite(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text(encoding="utf-8")
    new = change(text)
    if new != text:
        path.write_text(new, encoding="utf-8")


_XTEST = re.compile(r"\b(x)(test|it|describe)(\s*\()")
_DISABLED = re.compile(r"@Disabled(\s*\([^)]*\))?")
# aider's own rewrites: `sed 's/\bxtest(/test(/g'` and @Disabled(...) with its line end only
_AIDER_XTEST = re.compile(r"\bxtest\(")
_AIDER_DISABLED = re.compile(r"@Disabled\([^)]*\)\s*\n")


def check_aider_compat(aider_compat: str | None) -> None:
    """Refuse an `--aider-compat` value other than those of AIDER_COMPAT."""
    if aider_compat is not None and aider_compat not in AIDER_COMPAT:
        raise ValueError(f"--aider-compat {aider_compat!r} unknown; use one of {AIDER_COMPAT}")


def enable_all_tests(exercise: Exercise, folder: Path, aider_compat: str | None = None) -> None:
    """Turn skipped tests on in the copy's test files (`xtest`/`xit`/`xdescribe`, `@Disabled`).

    With `aider_compat` only what aider's harness turns on: `xtest(` (grep's `xit` stay
    skipped) and `@Disabled(...)` ending its line (forth's bare `@Disabled` stays).
    """
    check_aider_compat(aider_compat)
    for name in exercise.test_files:
        path = folder / name
        if exercise.language == "javascript":
            if aider_compat:
                _rewrite(path, lambda text: _AIDER_XTEST.sub("test(", text))
            else:
                _rewrite(path, lambda text: _XTEST.sub(r"\2\3", text))
        elif exercise.language == "java":
            pattern = _AIDER_DISABLED if aider_compat else _DISABLED
            _rewrite(path, functools.partial(pattern.sub, ""))


# --------------------------------------------------------------------------------------------------
# Test commands


def _path(*dirs: str) -> str:
    return ":".join([*dirs, "/usr/local/bin", "/usr/bin", "/bin"])


def test_command(
    exercise: Exercise, workspace: Workspace, aider_compat: str | None = None
) -> TestCommand:
    """The command that runs `exercise`'s tests in `workspace.exercise`, all of them (with
    `aider_compat` "2024-12", C++ runs only the tests ahead of EXERCISM_RUN_ALL_TESTS)."""
    check_aider_compat(aider_compat)
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
        run_all = "" if aider_compat == "2024-12" else "-DEXERCISM_RUN_ALL_TESTS=1 "
        script = (
            f"cmake -S . -B {build} {run_all}-DCMAKE_BUILD_TYPE=Debug "
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
        registry = cargo_registry()
        if registry is not None:  # the crates the exercises declare, from Debian's sources
            home = cache / "cargo"
            home.mkdir(parents=True, exist_ok=True)
            seen = workspace.tool(registry, "cargo-registry")
            (home / "config.toml").write_text(_cargo_config(seen), encoding="utf-8")
        return TestCommand("cargo test --offline -q -- --include-ignored", env)
    if language == "go":
        go = _go_binary()
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
        # the libraries the copy uses, the response's own imports included
        needs = _java_libraries(_tree_files(workspace.exercise))
        libraries = [JAVA_LIBRARIES[need][1] for need in needs if need in JAVA_LIBRARIES]
        extra = [*_JAVA_EXTRA_JARS, *(jar for jar in libraries if jar)]
        jars = [junit, *dict.fromkeys(jar for jar in extra if os.path.isfile(jar))]
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
    from the system's packages (g++ cmake libboost-date-time-dev nodejs npm cargo
    librust-time-dev librust-anyhow-dev librust-rand-dev librust-thiserror-dev golang-go
    default-jdk-headless junit5 libassertj-core-java; Debian's librust-*-dev crate sources in
    /usr/share/cargo/registry are the Rust runs' offline registry).
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
