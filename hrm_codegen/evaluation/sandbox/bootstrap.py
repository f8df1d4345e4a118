"""The code that runs first in every sandboxed interpreter: `python -I -S -c <this file's text>`.

It is never imported by the evaluator (only read as text), and holds no secret: the key, the
sealed token, the limits, extra sys.path entries and the program arrive on stdin, which is then
replaced. The token exists in clear only after the program has run to its end, in the process
that started it. Stdlib only, and as few imports as possible: every import costs start-up time.

Three modes, named on the payload's fourth line:

- `plain`: one program text, run as `__main__` (tests included, as today's benchmarks build it).
- `split`: the candidate runs as `__main__`; then every built-in, module and candidate name the
  tests use is put back as it was before the candidate ran, and the tests (rewritten by
  `trusted.py` so that each comparison goes through `compare`) run in a fresh namespace where
  the candidate's functions are wrapped: a value of a type that can lie about comparisons
  (anything but exact built-in value types) ends the program as failed.
- `stdio`: the program runs once per test in a forked child with the test's input on its stdin;
  each test's exit status, stdout and stderr go back framed; the evaluator compares outputs.
"""

# ruff: noqa: SIM105  (contextlib is not imported here: every import costs start-up time)
import os
import sys

# Kernel keyrings belong to users, not namespaces: inside bubblewrap a program still holds the
# session keyring it inherited, and reaches the invoking user's other keyrings by serial number
# (they are listed in /proc/keys) with that user's permissions, so it could read their keys or
# leave one for a later program. The three keyring system calls fail with EPERM instead.
# os.uname().machine: (AUDIT_ARCH_*, add_key, request_key, keyctl)
_KEYRING_SYSCALLS = {"x86_64": (0xC000003E, 248, 249, 250), "aarch64": (0xC00000B7, 217, 218, 219)}
_HRM_KEYRINGS_DENIED = False  # set by the fork server, whose children inherit its filter
_HRM_BASE = None  # set by the fork server: `_hrm_record_base()`, inherited by its children
# Modules whose own fork handlers rebind their names in every forked child (threading's
# _after_fork: new locks), so that the fork server's record of them is never up to date.
_REBOUND_AT_FORK = ("threading",)


def _hrm_deny_keyrings() -> bool:
    """Install a seccomp filter on this process and everything it starts: add_key, request_key,
    keyctl and every system call of another ABI (x32, 32-bit compat, whose numbers differ) fail
    with EPERM. False where the architecture is not one of `_KEYRING_SYSCALLS` or the kernel
    refuses the filter."""
    known = _KEYRING_SYSCALLS.get(os.uname().machine)
    if known is None:
        return False
    import ctypes
    import struct

    arch, *numbers = known
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    # (code, jump if true, jump if false, k); None jumps to the last instruction (deny)
    program = [(ld, 0, 0, 4), (jeq, 0, None, arch), (ld, 0, 0, 0)]  # seccomp_data.arch, .nr
    if arch == 0xC000003E:
        program.append((jge, None, 0, 0x40000000))  # x32 numbers have bit 30 set
    program += [(jeq, None, 0, number) for number in numbers]
    program += [(ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x00050000 | 1)]  # ALLOW, ERRNO | EPERM
    last = len(program) - 1
    packed = b"".join(
        struct.pack(
            "=HBBI",
            code,
            last - i - 1 if jt is None else jt,
            last - i - 1 if jf is None else jf,
            k,
        )
        for i, (code, jt, jf, k) in enumerate(program)
    )

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    ulong = ctypes.c_ulong
    if libc.prctl(38, ulong(1), ulong(0), ulong(0), ulong(0)) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    filters = _Program(len(program), packed)
    # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return libc.prctl(22, ulong(2), ctypes.byref(filters), ulong(0), ulong(0)) == 0


def _hrm_sandbox_main() -> None:
    import builtins
    import resource

    if not _HRM_KEYRINGS_DENIED:
        _hrm_deny_keyrings()
    os.write(1, b"\x01")
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    header, limits, paths, spec, body = b"".join(chunks).split(b"\n", 4)
    del chunks
    key, sealed = (bytes.fromhex(part.decode()) for part in header.split())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.dup(1)
    address_space, cpu_s, file_size, processes, watcher = (int(v) for v in limits.split())
    if watcher:  # fallback backend: no --die-with-parent, so ask the kernel for the same
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (Linux only)
        except (ImportError, AttributeError, OSError):
            pass
        if os.getppid() != watcher:
            os._exit(125)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if processes > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    sys.path.extend(p.decode() for p in paths.split(b"\0") if p)
    fields = spec.split()
    mode = fields[0]
    sizes = [int(v) for v in fields[2:]]
    parts = []
    for size in sizes:
        parts.append(body[:size])
        body = body[size:]
    del body
    name = os.path.join(os.getcwd(), "program.py")
    builtins.exit = builtins.quit = sys.exit
    if mode == b"stdio":
        _run_stdio(parts[0], parts[1:], float(fields[1]), cpu_s, name, out)
        os._exit(0)
    if mode == b"split":
        candidate, tests_text, tests_code, preimports = parts
        with open(name, "wb") as f:
            f.write(candidate + b"\n" + tests_text)
    else:
        (candidate,) = parts
        with open(name, "wb") as f:
            f.write(candidate)
    code = compile(candidate, name, "exec")
    del candidate, parts
    main = type(sys)("__main__")
    main.__file__ = name
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = [name]
    # Bound now, as the program may replace os.getpid & co. Only the process that started the
    # program may certify that it ran to the end: a forked copy that gets there (having taken
    # another branch) leaves quietly, so it can neither fake a pass nor write after the token.
    pid, getpid, write, leave = os.getpid(), os.getpid, os.write, os._exit
    set_blocking = os.set_blocking
    if mode == b"split":
        guard = _TrustedTests(preimports.decode().split(), fields[1].decode(), main)
        exec(code, main.__dict__)
        if getpid() != pid:
            leave(0)
        namespace = guard.namespace_for_tests(main.__dict__)
        guard.restore()
        code = None
        exec(_loads(tests_code), namespace)
    else:
        exec(code, main.__dict__)
    if getpid() != pid:
        leave(0)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    token = bytes(a ^ b for a, b in zip(key, sealed)).hex()
    set_blocking(out, True)
    write(out, b"\n" + token.encode() + b"\n")
    leave(0)


def _loads(data: bytes):
    import marshal

    return marshal.loads(data)


def _hrm_home(cls, modules):
    """The namespace of the module that defined `cls` (by its `__module__`), or None."""
    return getattr(modules.get(cls.__module__), "__dict__", None)


def _hrm_record_modules(modules, main, namespaces: dict, functions: list, classes: list) -> None:
    """Record what `_TrustedTests.restore` puts back for each of `modules` but `main`: its
    namespace (into `namespaces`, by the namespace's id), module-level functions' code and
    defaults, and the attributes of classes defined in Python."""
    function_type = type(_loads)
    for module in modules:
        if module is main:  # the candidate's own namespace: its functions' globals
            continue
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict:
            continue
        namespaces[id(namespace)] = (namespace, dict(namespace))
        for value in namespace.values():
            kind = type(value)
            if kind is function_type:
                functions.append((value, value.__code__, value.__defaults__, value.__kwdefaults__))
            elif kind is type and value.__flags__ & (1 << 9) and not value.__flags__ & (1 << 8):
                # a heap type that is not immutable: a class defined in Python
                classes.append((value, dict(value.__dict__)))


def _hrm_record_base() -> dict:
    """The fork server's record of every module it loaded, made once before its first fork.

    Why: recording a module takes a reference to each of its objects, and in a forked child
    every reference taken writes to the object's page, which the kernel must then copy. Built
    in each child, the record copied ~950 of the server's pages per program (4 ms here, and
    far more where page faults are dear: nested virtualisation); a child now records only the
    modules that are new or that the tests watch on every call, over this record. Set as
    `_HRM_BASE`; every process forked after inherits it unchanged.
    """
    import builtins

    builtins.exit = builtins.quit = sys.exit  # as each program's bootstrap sets them
    # The server's own `__main__` (under any name: multiprocessing aliases it `__mp_main__`)
    # is left to each child, which records it where it is still loaded, as a fresh
    # interpreter would: the candidate replaces `__main__` there.
    server_main = sys.modules.get("__main__")
    modules = {name: module for name, module in sys.modules.items() if module is not server_main}
    namespaces, functions, classes = {}, [], []
    _hrm_record_modules(modules.values(), None, namespaces, functions, classes)
    functions_by_globals, classes_by_home, stray_classes = {}, {}, []
    for function, *_ in functions:
        functions_by_globals.setdefault(id(function.__globals__), []).append(function)
    for cls, recorded in classes:
        home = _hrm_home(cls, modules)
        if home is None:  # its module may still be loaded by a program's tests
            stray_classes.append((cls, recorded))
        else:
            classes_by_home.setdefault(id(home), []).append((cls, recorded))
    return {
        "modules": modules,
        "namespaces": namespaces,
        "functions": functions,
        "classes": classes,
        "functions_by_globals": functions_by_globals,
        "classes_by_home": classes_by_home,
        "stray_classes": stray_classes,
    }


class _TrustedTests:
    """Pristine built-ins and modules for the tests, and a check of every value they compare.

    Built when the candidate has not run yet: it imports the modules the tests import, then
    records the built-ins, `sys.modules`, every module's namespace, module-level functions'
    code and defaults and plain classes' attributes, so that what the candidate replaces there
    is put back before the tests run and again after every call the tests make into it. In a
    fork server's child the server's record (`_HRM_BASE`) stands for the modules it had loaded;
    only the new ones, the watched ones and those rebound at fork are recorded here (it records
    the same: tests/test_sandbox_trusted.py).
    """

    def __init__(self, preimports: list, entry_point: str, main) -> None:
        import builtins

        for module in preimports:
            try:
                __import__(module)
            except BaseException:
                pass
        self.entry_point = None if entry_point == "-" else entry_point
        self.builtins = dict(builtins.__dict__)
        self.modules_dict = sys.modules
        self.modules = dict(sys.modules)
        watched = {"builtins", "sys", "collections", "decimal", *preimports}
        self.quick_names = [name for name in self.modules if name.partition(".")[0] in watched]
        self.quick_modules = [self.modules[name] for name in self.quick_names]
        base = _HRM_BASE
        if base is None:  # a fresh interpreter: every module is recorded here
            self.namespaces, base_functions, base_classes = {}, [], []
            fresh = list(self.modules.values())
        else:  # a fork server's child: what is new or watched, over the server's record
            self.namespaces = base["namespaces"]  # this process's own copy, updated in place
            base_functions, base_classes = base["functions"], base["classes"]
            known = base["modules"]
            names = {*self.quick_names, *_REBOUND_AT_FORK}
            for name, module in self.modules.items():
                if known.get(name) is not module:
                    names.add(name)
                    while "." in name:  # importing a.b.c binds names in a and a.b
                        name = name.rpartition(".")[0]
                        names.add(name)
            fresh = [self.modules[name] for name in names if name in self.modules]
        functions, classes = [], []
        _hrm_record_modules(fresh, main, self.namespaces, functions, classes)
        # Put back in this order: what was recorded here wins over the server's record.
        self.functions = (base_functions, functions)
        self.classes = (base_classes, classes)
        self.scalars = {
            id(kind): kind
            for kind in (int, float, complex, bool, str, bytes, type(None), range, type)
        }
        self.scalars[id(type(...))] = type(...)
        self.sequences = {id(kind): kind for kind in (list, tuple, set, frozenset)}
        self.mappings = {id(dict): dict}
        # The standard library's containers, when their module was loaded before the candidate
        # ran (so their classes are among what restore() puts back): the evaluator loads it
        # first when the candidate names it; one the candidate loads itself stays untrusted.
        collections = self.modules.get("collections")
        if collections is not None:
            for name in ("Counter", "OrderedDict", "defaultdict"):
                kind = collections.__dict__.get(name)
                self.mappings[id(kind)] = kind
            self.sequences[id(collections.__dict__.get("deque"))] = collections.__dict__["deque"]
        decimal = self.modules.get("decimal")
        if decimal is not None and type(decimal.__dict__.get("Decimal")) is type:
            self.scalars[id(decimal.Decimal)] = decimal.Decimal
        self.type_attribute = type.__dict__.__getitem__
        iterables = [iter([]), iter(()), iter(""), iter(range(0)), iter(set()), iter({})]
        iterables += [{}.keys(), {}.values(), {}.items(), iter({}.values()), iter({}.items())]
        iterables += [(x for x in ()), map(len, ()), filter(None, ()), zip(), enumerate(())]
        iterables += [reversed([]), iter(b"")]
        self.lazy = {id(type(value)): type(value) for value in iterables}
        function_type = type(_loads)
        self.function_types = {id(function_type): function_type}
        import _functools  # built in (cheap), unlike functools; the C types functools returns

        for kind in (_functools._lru_cache_wrapper, _functools.partial):
            self.function_types[id(kind)] = kind
        self.function_types[id(type(self.restore))] = type(self.restore)
        self.type = type
        self.id = id
        self.settrace = sys.settrace
        self.setprofile = sys.setprofile
        self.setattr = type.__setattr__
        self.delattr = type.__delattr__
        self.exit = os._exit
        self.write = os.write
        import _operator

        self.same = _operator.is_
        quick_dicts = set()
        self.quick_namespaces = []
        for module in self.quick_modules:
            namespace = getattr(module, "__dict__", None)
            if id(namespace) in self.namespaces and id(namespace) not in quick_dicts:
                quick_dicts.add(id(namespace))
                recorded = self.namespaces[id(namespace)][1]
                self.quick_namespaces.append((namespace, list(recorded.values())))
        quick = {}
        for namespace_id in quick_dicts if base is not None else ():
            for function in base["functions_by_globals"].get(namespace_id, ()):
                quick[id(function)] = function
        for function, *_ in functions:
            if id(function.__globals__) in quick_dicts:
                quick[id(function)] = function
        self.quick_functions = list(quick.values())
        self.quick_function_attributes = []
        for name in ("__code__", "__defaults__", "__kwdefaults__"):
            attribute = _operator.attrgetter(name)
            self.quick_function_attributes.append(
                (attribute, list(map(attribute, self.quick_functions)))
            )
        candidates = []
        for namespace_id in quick_dicts if base is not None else ():
            candidates += base["classes_by_home"].get(namespace_id, ())
        if base is not None:
            candidates += base["stray_classes"]
        quick = {}
        for cls, recorded in candidates + classes:  # the last record of a class wins
            if id(_hrm_home(cls, sys.modules)) in quick_dicts:
                quick[id(cls)] = (cls, list(recorded.values()))
        self.quick_classes = list(quick.values())

    def untouched(self) -> bool:
        """Whether nothing the tests use directly was replaced (identity checks at C speed).

        Watched on every call: built-ins, sys, the modules the tests import (and their
        submodules) and the trusted containers' modules; their namespaces, functions' code
        and defaults, and classes' attributes.
        """
        same, all_of = self.same, all
        if not all_of(map(same, map(self.modules_dict.get, self.quick_names), self.quick_modules)):
            return False
        for namespace, values in self.quick_namespaces:
            if len(namespace) != len(values) or not all_of(map(same, namespace.values(), values)):
                return False
        for attribute, values in self.quick_function_attributes:
            if not all_of(map(same, map(attribute, self.quick_functions), values)):
                return False
        for cls, values in self.quick_classes:
            current = cls.__dict__
            if len(current) != len(values) or not all_of(map(same, current.values(), values)):
                return False
        return True

    def restore(self) -> None:
        """Put back every built-in, module, module attribute, function and class as recorded.

        Called before the tests and around every call they make: `untouched()` first, so that
        the usual case costs microseconds; anything changed anywhere is then put back.
        """
        self.settrace(None)
        self.setprofile(None)
        if self.untouched():
            return
        modules = self.modules_dict
        for name, module in self.modules.items():
            if modules.get(name) is not module:
                modules[name] = module
        for namespace, recorded in self.namespaces.values():
            for name, value in recorded.items():
                if namespace.get(name, namespace) is not value:
                    namespace[name] = value
            if len(namespace) != len(recorded):
                for name in [name for name in namespace if name not in recorded]:
                    del namespace[name]
        for functions in self.functions:
            for function, code, defaults, kwdefaults in functions:
                if function.__code__ is not code:
                    function.__code__ = code
                if function.__defaults__ is not defaults:
                    function.__defaults__ = defaults
                if function.__kwdefaults__ is not kwdefaults:
                    function.__kwdefaults__ = kwdefaults
        for classes in self.classes:
            for cls, recorded in classes:
                current = cls.__dict__
                for name, value in recorded.items():
                    if current.get(name, current) is not value:
                        try:
                            self.setattr(cls, name, value)
                        except (TypeError, AttributeError):
                            pass
                if len(current) != len(recorded):
                    for name in [name for name in current if name not in recorded]:
                        try:
                            self.delattr(cls, name)
                        except (TypeError, AttributeError):
                            pass

    def call(self, function, /, *args, **kwargs):
        """Every call of the tests: made with pristine state, and the state put back after."""
        self.restore()
        try:
            return function(*args, **kwargs)
        finally:
            self.restore()

    def call_method(self, owner, name, /, *args, **kwargs):
        """`owner.name(...)` of the tests: the method is looked up once the state is pristine."""
        self.restore()
        try:
            return getattr(owner, name)(*args, **kwargs)
        finally:
            self.restore()

    def fail(self, message: str) -> None:
        """End the program as failed; no `except` in the tests can catch this."""
        self.write(2, ("\nUntrustedValue: " + message + "\n").encode("utf-8", "replace"))
        self.exit(1)

    def untrusted(self, value):
        """The first type in `value` (recursively) that is not an exact built-in value type."""
        kind_of, id_of = self.type, self.id
        scalars, sequences = self.scalars, self.sequences
        stack, seen = [value], set()
        while stack:
            item = stack.pop()
            kind = kind_of(item)
            if id_of(kind) in scalars:
                continue
            if id_of(kind) in sequences:
                if id_of(item) not in seen:
                    seen.add(id_of(item))
                    stack.extend(item)
            elif id_of(kind) in self.mappings:
                if id_of(item) not in seen:
                    seen.add(id_of(item))
                    stack.extend(dict.keys(item))
                    stack.extend(dict.values(item))
            elif not self.immutable_builtin(kind):
                return kind
        return None

    def immutable_builtin(self, kind) -> bool:
        """C value types nothing can patch: re's Match and Pattern, numpy's scalars.

        Told apart by flags a class statement cannot produce: re's types are immutable and not
        subclassable, numpy's scalars are static (not heap) types; names alone could be faked.
        """
        attribute = self.type_attribute
        try:
            flags = attribute("__flags__").__get__(kind)
            where = (attribute("__module__").__get__(kind), attribute("__qualname__").__get__(kind))
        except BaseException:
            return False
        heap, immutable, subclassable = flags & (1 << 9), flags & (1 << 8), flags & (1 << 10)
        if where in _RE_TYPES:
            return bool(immutable and not subclassable)
        return not heap and where[0] == "numpy" and where[1] in _NUMPY_SCALARS

    def name_of(self, kind) -> str:
        try:
            return str(self.type.__dict__["__name__"].__get__(kind))
        except BaseException:
            return "?"

    def checked(self, value, where: str):
        """A value returned by the candidate: trusted as is, an iterator checked item by item."""
        kind = self.untrusted(value)
        if kind is None:
            return value
        if self.id(kind) in self.lazy and self.type(value) is kind:
            return self.checked_items(value, where)
        self.fail(f"untrusted return type {self.name_of(kind)} from {where}")

    def checked_items(self, iterator, where: str):
        for item in iterator:
            self.restore()
            kind = self.untrusted(item)
            if kind is not None:
                self.fail(f"untrusted type {self.name_of(kind)} yielded by {where}")
            yield item
        self.restore()

    def wrap(self, function, name: str):
        """`function` as the tests see it: state restored and its result checked after each call."""
        checked = self.checked
        where = name + "()"

        def call(*args, **kwargs):
            return checked(function(*args, **kwargs), where)

        call.__name__ = call.__qualname__ = name
        call.__wrapped__ = function
        return call

    def namespace_for_tests(self, candidate: dict) -> dict:
        """A fresh namespace: the candidate's names (functions wrapped), pristine built-ins."""
        namespace = {}
        for name, value in dict(candidate).items():
            if self.id(self.type(value)) in self.function_types:
                value = self.wrap(value, name)
            namespace[name] = value
        namespace["__builtins__"] = dict(self.builtins)
        namespace["__name__"] = "__main__"
        namespace["__hrm_sandbox_compare__"] = self.compare
        namespace["__hrm_sandbox_call__"] = self.call
        namespace["__hrm_sandbox_call_method__"] = self.call_method
        return namespace

    def compare(self, operators: tuple, left, *rights):
        """A (possibly chained) comparison of the tests, on trusted values only.

        `rights` are the right-hand operands, or for chains zero-argument functions giving them,
        so that `a < b < c` still evaluates `c` only when `a < b` holds.
        """
        lazy = len(operators) > 1
        for operator, right in zip(operators, rights):
            if lazy:
                right = right()
            if operator > 1:  # identity (`is`, `is not`) cannot lie
                for side in (left, right):
                    kind = self.untrusted(side)
                    if kind is not None:
                        self.fail(f"untrusted value type {self.name_of(kind)} in a comparison")
            if not _OPERATORS[operator](left, right):
                return False
            left = right
        return True


_RE_TYPES = (("re", "Match"), ("re", "Pattern"))
_NUMPY_SCALARS = frozenset(
    ["bool", "bool_", "str_", "bytes_", "float16", "float32", "float64", "longdouble"]
    + ["complex64", "complex128", "clongdouble", "longlong", "ulonglong", "intc", "uintc"]
    + [f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)]
)
_OPERATORS = (
    lambda a, b: a is b,
    lambda a, b: a is not b,
    lambda a, b: a == b,
    lambda a, b: a != b,
    lambda a, b: a < b,
    lambda a, b: a <= b,
    lambda a, b: a > b,
    lambda a, b: a >= b,
    lambda a, b: a in b,
    lambda a, b: a not in b,
)


def _run_stdio(source, inputs, timeout, cpu_s, name, out) -> None:
    """Run `source` once per input, each in a forked child, and frame each outcome to `out`.

    Frame: `index status exit_code stdout_bytes stderr_bytes\\n` then both outputs. status is
    `ok` (exit 0), `error` (non-zero exit or signal) or `timeout`. Children are fresh forks of
    this process, which never runs the program itself, so no test sees another's state in
    memory; each gets its own process group, killed whole when it ends.
    """
    import resource
    import select
    import signal
    import time

    with open(name, "wb") as f:
        f.write(source)
    code = compile(source, name, "exec")
    cap = 64 << 20
    cpu = max(1, min(cpu_s, int(timeout) + 1))
    for index, data in enumerate(inputs):
        stdin_path = os.path.join(os.path.dirname(name), f".stdin-{index}")
        with open(stdin_path, "wb") as f:
            f.write(data)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.setpgid(0, 0)
                stdin = os.open(stdin_path, os.O_RDONLY)
                os.dup2(stdin, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (stdin, out_r, out_w, err_r, err_w, out):
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                main = type(sys)("__main__")
                main.__file__ = name
                main.__builtins__ = __builtins__
                sys.modules["__main__"] = main
                sys.argv = [name]
                status = 0
                try:
                    exec(code, main.__dict__)
                except SystemExit as stop:
                    if stop.code is None:
                        status = 0
                    elif isinstance(stop.code, int):
                        status = stop.code & 0xFF
                    else:
                        print(stop.code, file=sys.stderr)
                        status = 1
                except BaseException:
                    sys.excepthook(*sys.exc_info())
                    status = 1
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except BaseException:
                        pass
            finally:
                os._exit(locals().get("status", 1))
        os.close(out_w)
        os.close(err_w)
        start = time.monotonic()
        deadline = start + timeout
        buffers = {out_r: bytearray(), err_r: bytearray()}
        open_fds = [out_r, err_r]
        exit_status = None
        timed_out = False
        while open_fds:
            now = time.monotonic()
            if exit_status is None:
                done, raw = os.waitpid(child, os.WNOHANG)
                if done:
                    exit_status = raw
                    deadline = min(deadline, now + 1.0)  # a daemon may still hold the pipes
                    try:
                        os.killpg(child, signal.SIGKILL)
                    except OSError:
                        pass
            if now >= deadline:
                timed_out = exit_status is None
                break
            ready, _, _ = select.select(open_fds, [], [], min(0.02, deadline - now))
            for fd in ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    open_fds.remove(fd)
                elif len(buffers[fd]) < cap:
                    buffers[fd] += data
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
        if exit_status is None:
            _, exit_status = os.waitpid(child, 0)
        for fd in (out_r, err_r):
            os.close(fd)
        os.unlink(stdin_path)
        if timed_out:
            status, code_value = "timeout", -1
        elif os.WIFEXITED(exit_status):
            code_value = os.WEXITSTATUS(exit_status)
            status = "ok" if code_value == 0 else "error"
        else:
            status, code_value = "error", 128 + os.WTERMSIG(exit_status)
        stdout, stderr = bytes(buffers[out_r]), bytes(buffers[err_r])[-4096:]
        frame = f"{index} {status} {code_value} {len(stdout)} {len(stderr)}\n".encode()
        _write_all(out, frame + stdout + stderr)
        if status != "ok":
            return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    _hrm_sandbox_main()
