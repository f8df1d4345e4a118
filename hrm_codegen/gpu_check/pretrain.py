"""Step 4, pretraining: locating the benchmark files, building the code BPE and the
standard-library corpus shard (`prepare_data`, run in a spawned process by `background` while
steps 2-3 measure), sizing each run to the time left (`plan_run`), and the runs themselves through
the real `train()` with their results read back from metrics.jsonl. One module because data,
planning and the runs form one pipeline whose only outputs are the run folders step 5 loads."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hrm_codegen.gpu_check.options import BENCHMARK_FILES, PRETRAIN_ARMS, CheckOptions, Sizes
from hrm_codegen.gpu_check.report import Budget, Report, _error_text, _free_device_memory


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
    from hrm_codegen.train_cli import run_training

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
            run_training(compose_training_config(overrides))
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
