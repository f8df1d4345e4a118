"""One timed check of a GPU machine: environment, speed, a short pretraining race, MBPP pass@1.

    python scripts/gpu_check.py --out gpu_check --data-dir runs/gpu_check_data   # one H200, < 9 min
    python scripts/gpu_check.py --device cpu --tiny --out /tmp/gc                # toy sizes, CPU

Why one command: a GPU machine is lent for minutes, bare (no registry, no internet), so everything
the check needs is built on the spot from the standard library (the code BPE and the corpus
shard) or passed in with `--data-dir` (a folder with mbpp.jsonl; sanitized-mbpp.json and
HumanEval.jsonl.gz too for decontamination). Five steps, each timed and guarded (a failing step
records its error and the check goes on):

1. environment: GPU, memory, versions, bf16, flash_attn, bubblewrap, CPUs;
2. training tokens/s and MFU of the reference models (configs/model), eager and compiled
   (`hrm_codegen.training.bench.bench_model`);
3. KV-cached decode tokens/s, batch 1 and 32, eager and compiled (`measure_throughput`);
4. pretraining of the HRM and the parameter-matched transformer through the real `train()`, with
   max_steps chosen from step 2 so each run fits its time; `val/bpb`, `val/mbpp_bpb`, tokens/s;
5. greedy MBPP pass@1 of both trained models, judged in the sandbox.

`gpu_check.json` and `gpu_check.md` are rewritten after every measurement, so a kill leaves the
results so far. `--budget-seconds` (default 540) bounds the whole check: work that would not fit
is skipped with a note, and the pretraining runs shrink to the time left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JSON_FILE = "gpu_check.json"
MD_FILE = "gpu_check.md"
STEPS = ("environment", "train_throughput", "decode", "pretrain", "pass_at_1")
TRAIN_MODELS = ("hrm", "transformer", "transformer_deep")  # configs/model names
DECODE_MODELS = ("hrm", "transformer_deep")  # the HRM and its compute-matched baseline
PRETRAIN_ARMS = ("hrm", "transformer")  # the HRM and its parameter-matched baseline
BENCHMARK_FILES = ("mbpp.jsonl", "sanitized-mbpp.json", "HumanEval.jsonl.gz")


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and `--tiny`."""

    vocab_size: int
    seq_len: int
    batch_size: int
    bench_steps: int
    bench_warmup: int
    decode_batches: tuple[int, ...]
    decode_prompt_len: int
    decode_new_tokens: int
    tokenizer_stdlib_mb: float
    corpus_mb: float
    val_fraction: float
    eval_max_batches: int
    pass_max_new_tokens: int
    pass_batch_size: int
    pass_timeout: float
    max_steps_cap: int | None = None
    min_train_seconds: float = 15.0
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Seconds a piece of work is assumed to take before it has been seen once (budget planning).
    estimates: dict[str, float] = field(default_factory=dict)


REAL = Sizes(
    vocab_size=16384,
    seq_len=1024,
    batch_size=32,
    bench_steps=5,
    bench_warmup=2,
    decode_batches=(1, 32),
    decode_prompt_len=128,
    decode_new_tokens=128,
    tokenizer_stdlib_mb=4.0,
    corpus_mb=32.0,
    val_fraction=0.05,
    eval_max_batches=8,
    pass_max_new_tokens=256,
    pass_batch_size=64,
    pass_timeout=5.0,
    estimates={
        "bench_eager": 15.0,
        "bench_compiled": 75.0,
        "decode_eager": 10.0,
        "decode_compiled": 60.0,
        "prepare": 45.0,
        "run_overhead": 20.0,
        "pass_model": 45.0,
    },
)
_TINY_WIDTH = {"hidden_size": 64, "num_heads": 2, "max_seq_len": 512}
TINY = Sizes(
    vocab_size=512,
    seq_len=64,
    batch_size=4,
    bench_steps=1,
    bench_warmup=1,
    decode_batches=(1, 4),
    decode_prompt_len=16,
    decode_new_tokens=6,
    tokenizer_stdlib_mb=0.2,
    corpus_mb=0.4,
    val_fraction=0.1,
    eval_max_batches=2,
    pass_max_new_tokens=24,
    pass_batch_size=8,
    pass_timeout=5.0,
    max_steps_cap=6,
    min_train_seconds=0.2,
    model_overrides={
        "hrm": {**_TINY_WIDTH, "H_layers": 1, "L_layers": 1},
        "transformer": {**_TINY_WIDTH, "n_layers": 2},
        "transformer_deep": {**_TINY_WIDTH, "n_layers": 6},
    },
    estimates={
        "bench_eager": 3.0,
        "bench_compiled": 8.0,
        "decode_eager": 2.0,
        "decode_compiled": 6.0,
        "prepare": 10.0,
        "run_overhead": 1.0,
        "pass_model": 5.0,
    },
)
# Steps 2 and 3 must be done by these fractions of the budget; the rest is for pretraining and
# pass@1, which are what a lent machine is mostly for.
BENCH_DEADLINE = 0.20
DECODE_DEADLINE = 0.32


@dataclass
class CheckOptions:
    """What `run_check` does; the command line fills it (see `main`)."""

    out: Path
    device: str = "cuda"
    tiny: bool = False
    data_dir: Path | None = None
    work_dir: Path | None = None  # default: <out>/work on CPU runs, runs/gpu_check elsewhere
    train_seconds: float | None = None  # per pretraining run; default 180 (tiny: 3)
    budget_seconds: float = 540.0
    pass_tasks: int | None = None  # default 100 (tiny: 5)
    compile_backend: str | None = None  # default inductor (tiny: eager, see compile_backend())
    background_prepare: bool | None = (
        None  # build tokenizer+corpus during steps 2-3 (default: CUDA)
    )
    lr: float = 6e-4
    seed: int = 0

    def resolved(self) -> CheckOptions:
        """The defaults that depend on `tiny` and `device` filled in."""
        cuda = self.device.startswith("cuda")
        return CheckOptions(
            out=Path(self.out),
            device=self.device,
            tiny=self.tiny,
            data_dir=Path(self.data_dir) if self.data_dir else None,
            work_dir=Path(self.work_dir)
            if self.work_dir
            else (Path("runs") / "gpu_check" if cuda else Path(self.out) / "work"),
            train_seconds=self.train_seconds or (3.0 if self.tiny else 180.0),
            budget_seconds=float(self.budget_seconds),
            pass_tasks=self.pass_tasks or (5 if self.tiny else 100),
            compile_backend=self.compile_backend or ("eager" if self.tiny else "inductor"),
            background_prepare=cuda if self.background_prepare is None else self.background_prepare,
            lr=self.lr,
            seed=self.seed,
        )


# --------------------------------------------------------------------------------------------------
# Time, results on disk


class Budget:
    """Wall-clock accounting against `--budget-seconds`, so work is skipped before it overruns."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self, until_fraction: float = 1.0) -> float:
        """Seconds left before `until_fraction` of the budget is spent."""
        return self.seconds * until_fraction - self.elapsed()

    def fits(self, need: float, until_fraction: float = 1.0) -> bool:
        return self.left(until_fraction) >= need


class Report:
    """The results, rewritten to gpu_check.json and gpu_check.md after every change, so a killed
    check leaves what it had measured."""

    def __init__(self, out: Path, header: dict[str, Any], budget: Budget) -> None:
        self.out = out
        self.budget = budget
        self.data: dict[str, Any] = {**header, "finished": False, "steps": {}}
        out.mkdir(parents=True, exist_ok=True)

    def step(self, name: str) -> dict[str, Any]:
        return self.data["steps"].setdefault(name, {"status": "pending", "notes": []})

    def write(self) -> None:
        self.data["elapsed_seconds"] = round(self.budget.elapsed(), 2)
        for path, text in (
            (self.out / JSON_FILE, json.dumps(_jsonable(self.data), indent=2) + "\n"),
            (self.out / MD_FILE, render_markdown(self.data)),
        ):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null (and say so in the field's note)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def guarded(report: Report, name: str, skip_reason: str | None = None) -> Iterator[dict[str, Any]]:
    """Run one step: time it, record its error instead of raising, write the report after."""
    record = report.step(name)
    record["status"] = "running"
    start = time.perf_counter()
    try:
        if skip_reason is not None:
            record["status"] = "skipped"
            record["notes"].append(skip_reason)
        yield record
        if record["status"] == "running":
            record["status"] = "ok"
    except Exception as error:  # the check goes on; the error is the result
        record["status"] = "error"
        record["error"] = _error_text(error)
        record["traceback"] = traceback.format_exc()[-4000:]
        print(f"[gpu_check] step {name} failed: {record['error']}", flush=True)
    finally:
        record["seconds"] = round(time.perf_counter() - start, 2)
        _free_device_memory()
        report.write()


def _free_device_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """Inside the block every `torch.compile` (the benchmark's, generation's, the trainer's) uses
    `backend`. "inductor" changes nothing; `--tiny` uses "eager": Dynamo still traces the same
    graphs (fixed-shape decoding, the compiled model), without Inductor's minutes of C++ builds
    on a CPU. The compiled decode step generation caches per device is restored afterwards."""
    if backend == "inductor":
        yield
        return
    import torch

    from hrm_codegen import generation

    real = torch.compile
    saved_steps = dict(generation._COMPILED_STEPS)

    def routed(model: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("mode", None)  # modes are Inductor's
        kwargs.pop("options", None)
        return real(model, **{**kwargs, "backend": backend})

    torch.compile = routed
    try:
        yield
    finally:
        torch.compile = real
        generation._COMPILED_STEPS.clear()
        generation._COMPILED_STEPS.update(saved_steps)
        torch._dynamo.reset()  # no cache entry of this backend may serve a later compile


# --------------------------------------------------------------------------------------------------
# Step 1: environment


def environment(device: str) -> dict[str, Any]:
    """What the numbers were measured on, and which optional pieces work there."""
    import importlib

    import torch

    from hrm_codegen.evaluation.sandbox import bwrap_status
    from hrm_codegen.training.flops import peak_flops

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            driver_cudnn=torch.backends.cudnn.version(),
        )
    else:
        info.update(gpu=None, bf16_supported=None)
    peak = peak_flops(torch.device(device)) if _device_ready(device) else None
    info["peak_flops"] = peak
    for name in ("flash_attn", "transformers", "accelerate", "tokenizers", "hydra", "omegaconf"):
        try:
            module = importlib.import_module(name)
            info[f"{name}_version"] = getattr(module, "__version__", "present")
        except Exception as error:  # a missing or broken package is a finding, not a failure
            info[f"{name}_version"] = None
            info[f"{name}_error"] = _error_text(error)[:300]
    info["bwrap_path"] = shutil.which("bwrap")
    command, reason = bwrap_status()
    info["bwrap_works"] = command is not None
    if command is None:
        info["bwrap_reason"] = reason
    return info


def _device_ready(device: str) -> bool:
    import torch

    return not device.startswith("cuda") or torch.cuda.is_available()


# --------------------------------------------------------------------------------------------------
# Step 2: training throughput


def train_throughput(
    record: dict[str, Any], report: Report, budget: Budget, sizes: Sizes, device: str
) -> None:
    """Training tokens/s and MFU of each reference model, eager then compiled; the compile time
    is estimated as the extra wall time of the compiled run over the eager one."""
    import torch

    from hrm_codegen.training.bench import bench_model
    from hrm_codegen.training.flops import peak_flops

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    peak = peak_flops(dev)
    dtype = "bf16" if cuda else "fp32"
    record.update(
        dtype=f"{dtype} autocast" if cuda else "fp32",
        batch_size=sizes.batch_size,
        seq_len=sizes.seq_len,
        vocab_size=sizes.vocab_size,
        peak_flops=peak,
        rows=[],
    )
    report.write()
    counted = sizes.bench_steps + sizes.bench_warmup
    extra: dict[str, float] = {}  # eager wall time outside the timed steps (build, warm-up)
    estimate = dict(sizes.estimates)
    for compiled in (False, True):
        for name in TRAIN_MODELS:
            kind = "bench_compiled" if compiled else "bench_eager"
            row: dict[str, Any] = {"model": name, "compiled": compiled}
            record["rows"].append(row)
            if not budget.fits(estimate[kind], BENCH_DEADLINE):
                row["skipped"] = (
                    f"needs ~{estimate[kind]:.0f}s, {max(budget.left(BENCH_DEADLINE), 0):.0f}s "
                    f"left for this step ({BENCH_DEADLINE:.0%} of the budget)"
                )
                record["status"] = "partial"
                report.write()
                continue
            start = time.perf_counter()
            try:
                result = bench_model(
                    name,
                    vocab_size=sizes.vocab_size,
                    batch_size=sizes.batch_size,
                    seq_len=sizes.seq_len,
                    steps=sizes.bench_steps,
                    warmup=sizes.bench_warmup,
                    device=dev,
                    dtype=dtype,
                    peak=peak,
                    compile_model=compiled,
                    model_overrides=sizes.model_overrides.get(name),
                )
            except Exception as error:
                row["error"] = _error_text(error)
                record["status"] = "partial"
                print(f"[gpu_check] train {name} compiled={compiled}: {row['error']}", flush=True)
            else:
                wall = time.perf_counter() - start
                outside = max(wall - counted * result.seconds_per_step, 0.0)
                row.update(asdict(result), wall_seconds=round(wall, 2))
                row.pop("name")
                if compiled:
                    row["compile_seconds"] = round(max(outside - extra.get(name, 0.0), 0.0), 2)
                    estimate[kind] = max(wall * 1.1, 1.0)
                else:
                    extra[name] = outside
            finally:
                _free_device_memory()
            report.write()
            print(f"[gpu_check] train {name} compiled={compiled}: {_rate(row)}", flush=True)


def _rate(row: dict[str, Any]) -> str:
    if "tokens_per_second" in row:
        return f"{row['tokens_per_second']:,.0f} tokens/s"
    return row.get("error") or row.get("skipped") or "?"


# --------------------------------------------------------------------------------------------------
# Step 3: decoding


def decode_throughput(
    record: dict[str, Any], report: Report, budget: Budget, sizes: Sizes, device: str
) -> None:
    """KV-cached greedy decode tokens/s of the HRM and the compute-matched transformer; weights
    cast to bf16 on CUDA (the precision policy: stream, cache and logits in bf16)."""
    import torch

    from hrm_codegen.generation import measure_throughput
    from hrm_codegen.training.bench import model_config
    from hrm_codegen.training.trainer import build_model

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    record.update(
        dtype="bf16 weights (model.to(bfloat16))" if dev.type == "cuda" else "fp32",
        prompt_len=sizes.decode_prompt_len,
        new_tokens=sizes.decode_new_tokens,
        rows=[],
    )
    estimate = dict(sizes.estimates)
    models: dict[str, Any] = {}
    try:
        for compiled in (False, True):
            kind = "decode_compiled" if compiled else "decode_eager"
            for batch in sizes.decode_batches:
                for name in DECODE_MODELS:
                    row: dict[str, Any] = {"model": name, "batch_size": batch, "compiled": compiled}
                    record["rows"].append(row)
                    if not budget.fits(estimate[kind], DECODE_DEADLINE):
                        row["skipped"] = (
                            f"needs ~{estimate[kind]:.0f}s, "
                            f"{max(budget.left(DECODE_DEADLINE), 0):.0f}s left for this step "
                            f"({DECODE_DEADLINE:.0%} of the budget)"
                        )
                        record["status"] = "partial"
                        report.write()
                        continue
                    start = time.perf_counter()
                    try:
                        if name not in models:
                            torch.manual_seed(0)
                            config = {
                                **model_config(name),
                                **sizes.model_overrides.get(name, {}),
                            }
                            model = build_model(config, sizes.vocab_size)
                            models[name] = model.to(device=dev, dtype=dtype).eval()
                        result = measure_throughput(
                            models[name],
                            batch_size=batch,
                            prompt_len=sizes.decode_prompt_len,
                            new_tokens=sizes.decode_new_tokens,
                            compile=compiled,
                        )
                    except Exception as error:
                        row["error"] = _error_text(error)
                        record["status"] = "partial"
                    else:
                        wall = time.perf_counter() - start
                        row.update(result, wall_seconds=round(wall, 2))
                        if compiled:
                            estimate[kind] = max(wall * 1.1, 1.0)
                    report.write()
                    rate = row.get("new_tokens_per_s")
                    shown = f"{rate:,.1f} new tokens/s" if rate else row.get("error", "?")
                    print(
                        f"[gpu_check] decode {name} batch={batch} compiled={compiled}: {shown}",
                        flush=True,
                    )
    finally:
        models.clear()


# --------------------------------------------------------------------------------------------------
# Step 4: tokenizer, corpus, pretraining


def benchmark_dir(data_dir: Path | None) -> tuple[Path | None, bool]:
    """(folder holding mbpp.jsonl or None, whether every file decontamination needs is there)."""
    if data_dir is None:
        env = os.environ.get("HRM_CODEGEN_DATA_DIR")
        data_dir = Path(env) if env else None
    if data_dir is None or not (data_dir / "mbpp.jsonl").is_file():
        return None, False
    return data_dir, all((data_dir / name).is_file() for name in BENCHMARK_FILES)


def stdlib_source_dir(target: Path, megabytes: float, seed: int = 0) -> dict[str, Any]:
    """A folder of links to a seeded sample of `megabytes` MB of standard-library files (no
    site-packages), so `build_corpus` reads the same few MB on every machine with this Python."""
    from hrm_codegen.data.corpus import stdlib_dir, stdlib_python_files

    root = stdlib_dir()
    files = stdlib_python_files()
    random.Random(seed).shuffle(files)
    if target.exists():
        shutil.rmtree(target)
    budget, chosen = int(megabytes * 1e6), 0
    for path in files:
        if budget <= 0:
            break
        size = path.stat().st_size
        if size > budget and chosen:
            continue
        link = target / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
        budget -= size
        chosen += 1
    return {"files": chosen, "bytes": int(megabytes * 1e6) - budget, "stdlib": str(root)}


def prepare_data(
    work_dir: Path,
    data_dir: Path | None,
    sizes: Sizes,
    workers: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the code BPE and build the corpus shard; returns where they are and what they hold.

    The BPE is ours (`auto_tokenizer_dir`: MBPP train text plus the standard library, as a
    study's prepare step does; the standard library alone without MBPP). The corpus is
    `build_corpus` over a standard-library sample, decontaminated against MBPP and HumanEval
    when all three benchmark files are in `data_dir`, else built without and said so.
    """
    if workers is not None:  # a background build leaves the other cores to the benchmarks
        os.environ["RAYON_RS_NUM_CPUS"] = str(workers)
    from hrm_codegen.data.corpus import build_corpus
    from hrm_codegen.tokenization import train_code_bpe
    from hrm_codegen.training.data import auto_tokenizer_dir, stdlib_texts

    work_dir = Path(work_dir)
    bench_dir, complete = benchmark_dir(data_dir)
    info: dict[str, Any] = {"vocab_size": sizes.vocab_size, "notes": []}
    start = time.perf_counter()
    tok_cfg = {"vocab_size": sizes.vocab_size, "stdlib_mb": sizes.tokenizer_stdlib_mb}
    if bench_dir is not None:
        data_cfg = {"benchmark": "mbpp", "path": str(bench_dir), "train_split": "train"}
        tokenizer_dir = auto_tokenizer_dir(tok_cfg, data_cfg, work_dir)
        info["tokenizer_text"] = f"MBPP train + {sizes.tokenizer_stdlib_mb} MB standard library"
    else:
        tokenizer_dir = work_dir / "tokenizers" / f"stdlib-{sizes.vocab_size}"
        if not (tokenizer_dir / "tokenizer.json").is_file():
            texts = stdlib_texts(sizes.tokenizer_stdlib_mb)
            train_code_bpe(texts, sizes.vocab_size, tokenizer_dir, progress=False)
        info["tokenizer_text"] = f"{sizes.tokenizer_stdlib_mb} MB standard library (no MBPP)"
    info["tokenizer_dir"] = str(tokenizer_dir)
    info["tokenizer_seconds"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    info["source"] = stdlib_source_dir(work_dir / "stdlib_src", sizes.corpus_mb, seed)
    info["decontaminated"] = complete
    if not complete:
        info["notes"].append(
            "corpus NOT decontaminated: decontamination needs "
            + ", ".join(BENCHMARK_FILES)
            + " in --data-dir"
            + (f" ({bench_dir} lacks some)" if bench_dir else " (none given)")
        )
    corpus_dir = work_dir / "corpus"
    meta = build_corpus(
        corpus_dir,
        tokenizer=str(tokenizer_dir),
        source_dirs=[work_dir / "stdlib_src"],
        val_fraction=sizes.val_fraction,
        decontaminate=complete,
        benchmark_path=str(bench_dir) if complete else None,
        workers=workers,
        progress=False,
    )
    info["corpus_dir"] = str(corpus_dir)
    info["corpus_seconds"] = round(time.perf_counter() - start, 2)
    info["files"] = meta["files"]
    info["tokens"] = {split: v["tokens"] for split, v in meta["splits"].items()}
    return info


def _child(conn: Any, fn: Callable[..., Any], args: tuple) -> None:
    """Body of the background process: send back ("ok", result) or ("error", text)."""
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as error:  # the parent re-raises it where the result is needed
        conn.send(("error", f"{_error_text(error)}\n{traceback.format_exc()[-3000:]}"))
    finally:
        conn.close()


@contextlib.contextmanager
def background(enabled: bool, fn: Callable[..., Any], *args: Any) -> Iterator[Callable[[], Any]]:
    """`fn(*args)` in a spawned process while the block runs (enabled), else when asked for.

    Yields a function that returns the result, waiting for it. A plain non-daemon process, so
    `build_corpus` may start its own pool inside; spawned, not forked, because the parent holds
    a CUDA context by then. A result never asked for (its step skipped) is not waited for: the
    process is stopped when the block ends.
    """
    if not enabled:
        yield lambda: fn(*args)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, fn, args), name="gpu_check-prepare")
    process.start()
    send.close()
    got: list[Any] = []

    def result() -> Any:
        if not got:
            try:
                got.append(receive.recv())
            except EOFError:
                got.append(("error", f"the background process died (exit {process.exitcode})"))
            process.join()
        kind, value = got[0]
        if kind == "error":
            raise RuntimeError(f"background data preparation failed: {value}")
        return value

    try:
        yield result
    finally:
        if process.is_alive():
            process.terminate()
        process.join(10)
        receive.close()


def plan_run(
    seconds: float,
    overhead: float,
    tokens_per_step: int,
    eager_tok_s: float | None,
    compiled_tok_s: float | None,
    compile_seconds: float | None,
    max_steps_cap: int | None = None,
    safety: float = 0.85,
) -> dict[str, Any]:
    """max_steps and compile for a run that must end within `seconds`.

    Compiling pays when the tokens it trains after its compile time beat eager's over the same
    wall time; steps are the training time left times that rate, with a margin for the loop's own
    costs (data, logging, one host sync per step) that the bare benchmark does not have.
    """
    train_time = seconds - overhead
    options = []
    if eager_tok_s:
        options.append((train_time * eager_tok_s, False, train_time, eager_tok_s))
    if compiled_tok_s:
        left = train_time - (compile_seconds or 0.0)
        options.append((left * compiled_tok_s, True, left, compiled_tok_s))
    if not options:
        raise ValueError("no training throughput to plan from")
    tokens, compiled, time_for_steps, rate = max(options, key=lambda o: o[0])
    steps = int(safety * time_for_steps * rate / tokens_per_step) if tokens > 0 else 0
    if max_steps_cap is not None:
        steps = min(steps, max_steps_cap)
    return {
        "max_steps": steps,
        "compile": compiled,
        "planned_seconds": round(seconds, 1),
        "planned_tokens_per_s": rate,
    }


def pretrain_overrides(
    arm: str,
    run_dir: Path,
    prepared: dict[str, Any],
    sizes: Sizes,
    options: CheckOptions,
    max_steps: int,
    compiled: bool,
    mbpp_dir: Path | None,
) -> list[str]:
    """Hydra overrides of one pretraining run on configs/codegen_base.yaml."""
    cuda = options.device.startswith("cuda")
    out = [
        f"model={arm}",
        "data=corpus",
        "logger=jsonl",
        "experiment_name=gpu_check",
        f"run_dir={_quoted(run_dir)}",
        f"seed={options.seed}",
        f"device={'cuda' if cuda else 'cpu'}",
        f"mixed_precision={'bf16' if cuda else 'no'}",
        f"compile={str(compiled).lower()}",
        f"tokenizer.path={_quoted(prepared['tokenizer_dir'])}",
        f"data.shard_dir={_quoted(prepared['corpus_dir'])}",
        f"data.max_seq_len={sizes.seq_len}",
        f"train.max_steps={max_steps}",
        f"train.micro_batch_size={sizes.batch_size}",
        f"train.lr={options.lr!r}",
        "train.warmup_fraction=0.05",
        "eval.points=1",  # one evaluation, at the end
        f"eval.max_batches={sizes.eval_max_batches}",
        f"eval.batch_size={sizes.batch_size}",
        "eval.pass_at_1=false",
        f"checkpoint_interval={max_steps}",
        f"log_interval={max(1, max_steps // 20)}",
    ]
    if mbpp_dir is not None:
        out += ["eval.mbpp_bpb=true", f"eval.mbpp_path={_quoted(mbpp_dir)}"]
    else:
        out.append("eval.mbpp_bpb=false")  # no MBPP file, and no hub on a lent machine
    for key, value in sizes.model_overrides.get(arm, {}).items():
        out.append(f"model.{key}={value}")
    return out


def _quoted(path: str | Path) -> str:
    """A path as a quoted Hydra override value (spaces, commas or '=' would split it otherwise)."""
    text = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """The final evaluation and the training speed, read back from the run's metrics.jsonl."""
    from hrm_codegen.training.logging import read_metrics

    rows = read_metrics(run_dir)
    evals = [r for r in rows if any(k.startswith("val/") for k in r)]
    train_rows = [r for r in rows if "train/tok_s" in r]
    out: dict[str, Any] = {}
    if evals:
        last = max(evals, key=lambda r: r["step"])
        for key in ("val/bpb", "val/mbpp_bpb", "val/loss"):
            if key in last:
                out[key] = last[key]
    if train_rows:
        steady = train_rows[1:] or train_rows  # the first window holds the compile
        out["train_tok_s"] = statistics.median(r["train/tok_s"] for r in steady)
        mfu = [r["train/mfu"] for r in steady if "train/mfu" in r]
        out["train_mfu"] = statistics.median(mfu) if mfu else None
        final = max(train_rows, key=lambda r: r["step"])
        out["steps"] = final["step"]
        out["tokens_seen"] = final.get("tokens_seen")
        if final.get("train_seconds"):
            out["train_seconds"] = round(final["train_seconds"], 2)
            out["train_tok_s_overall"] = final["tokens_seen"] / final["train_seconds"]
    return out


def pretrain(
    record: dict[str, Any],
    report: Report,
    budget: Budget,
    sizes: Sizes,
    options: CheckOptions,
    prepared_result: Callable[[], dict[str, Any]],
    pass_reserve: float,
) -> None:
    """Both pretraining runs through `train()`, each sized to the time left (see `plan_run`)."""
    from hrm_codegen.study.runner import compose_training_config
    from hrm_codegen.training import train

    start = time.perf_counter()
    prepared = prepared_result()
    record["prepare"] = {**prepared, "wait_seconds": round(time.perf_counter() - start, 2)}
    record["notes"] += prepared.get("notes", [])
    record["runs"] = []
    report.write()
    mbpp_dir, _ = benchmark_dir(options.data_dir)
    if mbpp_dir is None:
        record["notes"].append("val/mbpp_bpb off: no mbpp.jsonl (pass --data-dir)")
    throughput = {
        (row["model"], row["compiled"]): row
        for row in report.step("train_throughput").get("rows", [])
        if "tokens_per_second" in row
    }
    tokens_per_step = sizes.batch_size * sizes.seq_len
    overhead = sizes.estimates["run_overhead"]
    for index, arm in enumerate(PRETRAIN_ARMS):
        run: dict[str, Any] = {"model": arm}
        record["runs"].append(run)
        runs_left = len(PRETRAIN_ARMS) - index
        seconds = min(options.train_seconds, (budget.left() - pass_reserve) / runs_left)
        if seconds - overhead < sizes.min_train_seconds:
            run["skipped"] = (
                f"{budget.left():.0f}s of the budget left ({pass_reserve:.0f}s kept for pass@1): "
                "too little for a run"
            )
            record["status"] = "partial"
            report.write()
            continue
        try:
            eager = throughput.get((arm, False))
            compiled = throughput.get((arm, True))
            if eager is None and compiled is None:  # step 2 missed this model: measure it now
                eager = _quick_throughput(arm, sizes, options.device)
                run["notes"] = ["throughput measured here (step 2 has no number for it)"]
            plan = plan_run(
                seconds,
                overhead,
                tokens_per_step,
                eager["tokens_per_second"] if eager else None,
                compiled["tokens_per_second"] if compiled else None,
                compiled.get("compile_seconds") if compiled else None,
                sizes.max_steps_cap,
            )
            run.update(plan)
            if plan["max_steps"] < 1:
                raise RuntimeError(f"{seconds:.0f}s leave no time for a training step")
            run_dir = Path(options.work_dir) / "runs" / arm
            if run_dir.exists():
                shutil.rmtree(run_dir)
            overrides = pretrain_overrides(
                arm,
                run_dir,
                prepared,
                sizes,
                options,
                plan["max_steps"],
                plan["compile"],
                mbpp_dir,
            )
            run["overrides"] = overrides
            report.write()
            started = time.perf_counter()
            train(compose_training_config(overrides))
            run["wall_seconds"] = round(time.perf_counter() - started, 2)
            run["run_dir"] = str(run_dir)
            run.update(summarize_run(run_dir))
        except Exception as error:
            run["error"] = _error_text(error)
            run["traceback"] = traceback.format_exc()[-3000:]
            record["status"] = "partial"
            print(f"[gpu_check] pretrain {arm}: {run['error']}", flush=True)
        finally:
            _free_device_memory()
        report.write()


def _quick_throughput(arm: str, sizes: Sizes, device: str) -> dict[str, Any]:
    import torch

    from hrm_codegen.training.bench import bench_model
    from hrm_codegen.training.flops import peak_flops

    dev = torch.device(device)
    result = bench_model(
        arm,
        vocab_size=sizes.vocab_size,
        batch_size=sizes.batch_size,
        seq_len=sizes.seq_len,
        steps=2,
        warmup=1,
        device=dev,
        dtype="bf16" if dev.type == "cuda" else "fp32",
        peak=peak_flops(dev),
        model_overrides=sizes.model_overrides.get(arm),
    )
    return asdict(result)


# --------------------------------------------------------------------------------------------------
# Step 5: MBPP pass@1


def pass_at_1(
    record: dict[str, Any],
    report: Report,
    budget: Budget,
    sizes: Sizes,
    options: CheckOptions,
) -> None:
    """Greedy pass@1 of each trained model on the first MBPP test tasks, generated on the device
    in bf16 (eager decoding: at ~100 tasks a compile would cost more than it saves) and judged in
    bubblewrap where it works, else the fallback backend (recorded)."""
    from hrm_codegen.data import load_benchmark
    from hrm_codegen.evaluation.harness import evaluate_model, load_model
    from hrm_codegen.evaluation.sandbox import resolve_backend

    mbpp_dir, _ = benchmark_dir(options.data_dir)
    tasks = load_benchmark("mbpp", split="test", path=mbpp_dir)[: options.pass_tasks]
    backend = resolve_backend("auto")
    record.update(
        sandbox=backend,
        sandbox_note=(
            "bubblewrap sandbox"
            if backend == "bwrap"
            else "bubblewrap unavailable: fallback backend (limits and timeouts, no isolation)"
        ),
        tasks=len(tasks),
        max_new_tokens=sizes.pass_max_new_tokens,
        dtype="bf16 weights" if options.device.startswith("cuda") else "fp32",
        rows=[],
    )
    runs = {r["model"]: r for r in report.step("pretrain").get("runs", []) if r.get("run_dir")}
    for arm in PRETRAIN_ARMS:
        row: dict[str, Any] = {"model": arm}
        record["rows"].append(row)
        if arm not in runs:
            row["skipped"] = "no trained checkpoint from step 4"
            record["status"] = "partial"
            report.write()
            continue
        if not budget.fits(sizes.estimates["pass_model"]):
            row["skipped"] = f"{max(budget.left(), 0):.0f}s of the budget left"
            record["status"] = "partial"
            report.write()
            continue
        try:
            model_type = "hrm" if arm == "hrm" else "transformer"
            dtype = "bf16" if options.device.startswith("cuda") else "fp32"
            model, tokenizer = load_model(
                model_type, runs[arm]["run_dir"], device=options.device, dtype=dtype
            )
            out_dir = Path(options.work_dir) / "pass_at_1" / arm
            if out_dir.exists():
                shutil.rmtree(out_dir)
            summary = evaluate_model(
                model.eval(),
                tokenizer,
                tasks,
                max_new_tokens=sizes.pass_max_new_tokens,
                batch_size=sizes.pass_batch_size,
                timeout=sizes.pass_timeout,
                output_dir=out_dir,
                sandbox=backend,
                progress=False,
            )
            row.update(
                {
                    "pass@1": float(summary.pass_at_k["pass@1"]),
                    "passed": sum(c for _, c in summary.per_task.values()),
                    "tasks": summary.num_tasks,
                    "counts": summary.counts,
                    "generation_s": round(summary.timings.get("generation_s", 0.0), 2),
                    "execution_s": round(summary.timings.get("execution_s", 0.0), 2),
                    "sandbox": summary.settings.get("sandbox"),
                }
            )
            del model
        except Exception as error:
            row["error"] = _error_text(error)
            record["status"] = "partial"
            print(f"[gpu_check] pass@1 {arm}: {row['error']}", flush=True)
        finally:
            _free_device_memory()
        report.write()


# --------------------------------------------------------------------------------------------------
# The whole check


def run_check(options: CheckOptions) -> dict[str, Any]:
    """Run the five steps within the budget; returns the report (also in gpu_check.json).

    `--tiny` on a CPU runs torch on one thread: toy-sized ops gain nothing from more, and on a
    shared machine idle intra-op threads spinning for busy cores made a decode step 50x slower.
    """
    import torch

    options = options.resolved()
    threads = torch.get_num_threads()
    if options.tiny and not options.device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        return _run_check(options)
    finally:
        torch.set_num_threads(threads)


def _run_check(options: CheckOptions) -> dict[str, Any]:
    sizes = TINY if options.tiny else REAL
    budget = Budget(options.budget_seconds)
    header = {
        "tool": "gpu_check",
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "options": asdict(options),
        "sizes": asdict(sizes),
        "budget_seconds": options.budget_seconds,
    }
    report = Report(Path(options.out), header, budget)
    for name in STEPS:
        report.step(name)
    report.write()
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    device = options.device
    mbpp_dir, _ = benchmark_dir(options.data_dir)

    with guarded(report, "environment") as record:
        record["data"] = environment(device)
    ready = _device_ready(device)
    not_ready = None if ready else f"device {device} is not available here"

    in_background = bool(options.background_prepare and ready)
    workers = max(1, (os.cpu_count() or 2) // 2) if in_background else None
    with (
        compile_backend(options.compile_backend),
        background(
            in_background,
            prepare_data,
            work,
            options.data_dir,
            sizes,
            workers,
            options.seed,
        ) as prepared_result,
    ):
        if in_background:
            report.step("pretrain")["notes"].append(
                f"tokenizer and corpus built in a background process ({workers} cores) "
                "during steps 2-3"
            )
        with guarded(report, "train_throughput", not_ready) as record:
            if record["status"] == "running":
                train_throughput(record, report, budget, sizes, device)
        with guarded(report, "decode", not_ready) as record:
            if record["status"] == "running":
                decode_throughput(record, report, budget, sizes, device)
        pass_reserve = 2 * sizes.estimates["pass_model"] if mbpp_dir is not None and ready else 0.0
        if not ready:
            skip = not_ready
        elif not in_background and not budget.fits(sizes.estimates["prepare"]):
            skip = f"{max(budget.left(), 0):.0f}s of the budget left: no time to build the data"
        else:
            skip = None
        with guarded(report, "pretrain", skip) as record:
            if record["status"] == "running":
                pretrain(record, report, budget, sizes, options, prepared_result, pass_reserve)
    if not ready:
        skip = not_ready
    elif mbpp_dir is None:
        skip = "no MBPP file: pass --data-dir with mbpp.jsonl (a lent machine has no hub)"
    else:
        skip = None
    with guarded(report, "pass_at_1", skip) as record:
        if record["status"] == "running":
            pass_at_1(record, report, budget, sizes, options)

    report.data["finished"] = True
    report.data["total_seconds"] = round(budget.elapsed(), 2)
    report.write()
    print(
        f"[gpu_check] total wall time {budget.elapsed():.1f}s (budget {budget.seconds:.0f}s); "
        f"wrote {Path(options.out) / JSON_FILE} and {Path(options.out) / MD_FILE}",
        flush=True,
    )
    return report.data


# --------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _row_note(row: dict[str, Any]) -> str:
    return row.get("error") or row.get("skipped") or ""


def render_markdown(data: dict[str, Any]) -> str:
    """The report as markdown: one table per step, then its notes and errors."""
    steps = data.get("steps", {})
    opts = data.get("options", {})
    total = data.get("total_seconds")
    lines = [
        "# gpu_check",
        "",
        f"`{data.get('command', '')}`, started {data.get('started', '?')}; "
        + (
            f"total wall time {total:.1f} s"
            if total is not None
            else f"unfinished after {data.get('elapsed_seconds', 0):.1f} s"
        )
        + f" of a {data.get('budget_seconds', 0):.0f} s budget.",
        "",
        f"device {opts.get('device')}{', --tiny (toy sizes)' if opts.get('tiny') else ''}; "
        f"torch.compile backend {opts.get('compile_backend')}; MBPP from "
        f"{opts.get('data_dir') or 'nowhere (no --data-dir)'}; work dir {opts.get('work_dir')}",
    ]
    env = steps.get("environment", {})
    lines += _section("1. Environment", env)
    if env.get("data"):
        lines += _table(["item", "value"], [[k, v] for k, v in env["data"].items()])

    step = steps.get("train_throughput", {})
    lines += _section("2. Training throughput (forward + backward + AdamW)", step)
    if step.get("rows"):
        lines.append(
            f"batch {step.get('batch_size')} x {step.get('seq_len')} tokens, vocab "
            f"{step.get('vocab_size')}, {step.get('dtype')}, peak "
            f"{_fmt(step.get('peak_flops'))} FLOP/s"
        )
        lines.append("")
        lines += _table(
            ["model", "compiled", "params", "GFLOP/token", "s/step", "tokens/s", "MFU", "compile s"]
            + ["note"],
            [
                [
                    r["model"],
                    r["compiled"],
                    r.get("params_total"),
                    r["flops_per_token"] / 1e9 if "flops_per_token" in r else None,
                    r.get("seconds_per_step"),
                    r.get("tokens_per_second"),
                    f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else None,
                    r.get("compile_seconds"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )

    step = steps.get("decode", {})
    lines += _section("3. Decoding with the KV cache (greedy, random prompts)", step)
    if step.get("rows"):
        lines.append(
            f"prompt {step.get('prompt_len')} tokens, {step.get('new_tokens')} new tokens, "
            f"{step.get('dtype')}"
        )
        lines.append("")
        lines += _table(
            ["model", "batch", "compiled", "new tokens/s", "prompt tokens/s", "wall s", "note"],
            [
                [
                    r["model"],
                    r["batch_size"],
                    r["compiled"],
                    r.get("new_tokens_per_s"),
                    r.get("prompt_tokens_per_s"),
                    r.get("wall_seconds"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )

    step = steps.get("pretrain", {})
    lines += _section("4. Pretraining on a standard-library shard", step)
    prep = step.get("prepare")
    if prep:
        lines += _table(
            ["item", "value"],
            [
                ["tokenizer", f"{prep.get('vocab_size')} tokens, {prep.get('tokenizer_text')}"],
                ["corpus files", prep.get("source", {}).get("files")],
                ["train / validation tokens", _split_tokens(prep.get("tokens", {}))],
                ["decontaminated", prep.get("decontaminated")],
                [
                    "tokenizer s / corpus s",
                    f"{prep.get('tokenizer_seconds')} / {prep.get('corpus_seconds')}",
                ],
            ],
        )
        lines.append("")
    if step.get("runs"):
        lines += _table(
            ["model", "compile", "steps", "tokens", "train tokens/s", "MFU", "val/bpb"]
            + ["val/mbpp_bpb", "wall s", "note"],
            [
                [
                    r["model"],
                    r.get("compile"),
                    r.get("steps", r.get("max_steps")),
                    r.get("tokens_seen"),
                    r.get("train_tok_s"),
                    f"{100 * r['train_mfu']:.1f}%" if r.get("train_mfu") is not None else None,
                    r.get("val/bpb"),
                    r.get("val/mbpp_bpb"),
                    r.get("wall_seconds"),
                    _row_note(r),
                ]
                for r in step["runs"]
            ],
        )

    step = steps.get("pass_at_1", {})
    lines += _section("5. MBPP pass@1 (greedy)", step)
    if step.get("rows"):
        lines.append(
            f"first {step.get('tasks')} MBPP test tasks, {step.get('max_new_tokens')} new tokens "
            f"at most, {step.get('dtype')}; judged by: {step.get('sandbox_note')}"
        )
        lines.append("")
        lines += _table(
            ["model", "pass@1", "passed", "tasks", "generation s", "judging s", "note"],
            [
                [
                    r["model"],
                    r.get("pass@1"),
                    r.get("passed"),
                    r.get("tasks"),
                    r.get("generation_s"),
                    r.get("execution_s"),
                    _row_note(r),
                ]
                for r in step["rows"]
            ],
        )
    return "\n".join(lines) + "\n"


def _split_tokens(tokens: dict[str, int]) -> str:
    return " / ".join(f"{tokens.get(s, 0):,}" for s in ("train", "validation"))


def _section(title: str, step: dict[str, Any]) -> list[str]:
    status = step.get("status", "pending")
    seconds = step.get("seconds")
    lines = ["", f"## {title}", "", f"status: {status}" + (f", {seconds} s" if seconds else "")]
    if step.get("error"):
        lines.append(f"error: `{_fmt(step['error'])}`")
    lines += [f"- {_fmt(note)}" for note in step.get("notes", [])]
    lines.append("")
    return lines


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`scripts/gpu_check.py`: parse the options, run the check, print where the results are."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the json and md")
    parser.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the pipeline in seconds")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="folder with mbpp.jsonl (+ the other two)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="tokenizer, corpus, runs (not --out)"
    )
    parser.add_argument(
        "--train-seconds", type=float, default=None, help="per pretraining run (180; tiny 3)"
    )
    parser.add_argument("--budget-seconds", type=float, default=540.0, help="whole check")
    parser.add_argument("--pass-tasks", type=int, default=None, help="MBPP tasks (100; tiny 5)")
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (inductor; tiny: eager)"
    )
    parser.add_argument("--lr", type=float, default=6e-4, help="pretraining learning rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # A lent machine has no network: fail fast instead of waiting on hub timeouts.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return run_check(
        CheckOptions(
            out=args.out,
            device=args.device,
            tiny=args.tiny,
            data_dir=args.data_dir,
            work_dir=args.work_dir,
            train_seconds=args.train_seconds,
            budget_seconds=args.budget_seconds,
            pass_tasks=args.pass_tasks,
            compile_backend=args.compile_backend,
            lr=args.lr,
            seed=args.seed,
        )
    )


__all__ = ["CheckOptions", "main", "plan_run", "render_markdown", "run_check"]
