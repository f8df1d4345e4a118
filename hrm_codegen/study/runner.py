"""Run a study: prepare the data, train every arm by the protocol, evaluate, write the report.

Order of work (each step skips what is already done, so a rerun resumes):
1. prepare: the study's tokenizer and token-shard corpus (built once, or given);
2. the learning-rate sweep: every arm at every swept lr on the first seed, pretraining stage;
3. selection: per arm, the lr with the lowest final `select_metric` (the corpus validation split);
4. the other seeds at each arm's selected lr;
5. the fine-tuning stage (when configured) from each selected pretraining run, at the selected lr
   times `sft.lr_scale`;
6. evaluations: `val/bpb` of every HRM at scaled inference cycles (test-time compute), and pass@k
   by sampling from every fine-tuned model;
7. results.json, report.md and plots (hrm_codegen/study/report.py).

Independent runs of one step can train side by side: `study.jobs` worker processes (spawned, each
with its share of the CPU threads; a run's output goes to `<out>/logs/`). Two one-thread runs on
2 cores train ~1.25x faster together than one two-thread run; results do not depend on `jobs`
beyond float rounding (thread count changes reduction order). Runs that start from another run
(fine-tuning of a later seed from that seed's pretraining) wait for it.

Every run is an ordinary training run directory (`<out>/runs/<stage>/<arm>/<lr>-seed<n>`) that
`scripts/evaluate.py` and `scripts/plot_runs.py` accept. A run is done when its checkpoint reached
its `max_steps`; an interrupted one continues with `resume=true`; a run whose loss went non-finite
is recorded as diverged (a legitimate outcome of a learning-rate sweep) and not retried.

Why by hand: a study is a loop over our own `train()` with Hydra overrides, plus our evaluators;
no sweep library knows the protocol (select on validation, FLOP-matched budgets, seeds after
selection), and the loop is short.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from hrm_codegen.run_layout import CHECKPOINT_DIR, CONFIG_SNAPSHOT
from hrm_codegen.study.executors import threads_per_job
from hrm_codegen.study.records import (
    REPRODUCED_FILE,
    is_recorded,
    record_status,
    write_record,
)
from hrm_codegen.study.runs import (
    EVAL_FILE,
    FAILED_FILE,
    RunKey,
    final_metric,
    model_facts,
    read_json,
    run_status,
)
from hrm_codegen.study.spec import StudyConfigError, StudySpec, lr_tag

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_training_config(overrides: list[str]) -> Any:
    """The training config (configs/codegen_base.yaml) with `overrides`, inside or outside a
    Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="codegen_base", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="codegen_base", overrides=overrides)


def prepare_study_data(
    prepare: dict[str, Any], out: Path, mbpp_path: str | None, log: Callable[[str], None]
) -> tuple[Path | str, Path]:
    """A study's tokenizer and corpus (`prepare` of its config), built under `<out>/prepare` once:
    the tokenizer named by `tokenizer_path`, else a small code BPE on MBPP train and the standard
    library; the corpus at `corpus_dir`, else built from folders (`source_dirs`) or a named,
    pinned source (`source`, default stdlib) with its settings overridden by the rest."""
    from hrm_codegen.data.corpus import build_corpus, build_named_corpus
    from hrm_codegen.training.data import auto_tokenizer_dir

    p = prepare
    tokenizer_dir: Path | str
    if p.get("exec"):  # generated output-prediction tasks instead of a corpus
        return prepare_exec_data(p, out, log)
    if p.get("tokenizer_path"):  # e.g. code-bpe: the tokenizer an existing corpus was built with
        tokenizer_dir = str(p["tokenizer_path"])
        if tokenizer_dir.startswith("~"):  # a path for the shell: Hydra's overrides cannot take ~
            tokenizer_dir = str(Path(tokenizer_dir).expanduser())
    else:
        tok_cfg = dict(p.get("tokenizer") or {})
        data_cfg = {"stage": "sft", "benchmark": "mbpp", "path": mbpp_path, "train_split": "train"}
        log("prepare: tokenizer (code BPE on MBPP train + the standard library)")
        tokenizer_dir = auto_tokenizer_dir(
            {"vocab_size": int(tok_cfg.get("vocab_size", 4096)), **tok_cfg},
            data_cfg,
            out / "prepare",
        )
    if p.get("corpus_dir"):
        return tokenizer_dir, Path(str(p["corpus_dir"])).expanduser()
    c = dict(p.get("corpus") or {})
    options = {"workers": c.pop("workers", None), "progress": c.pop("progress", True)}
    corpus_dir = out / "prepare" / "corpus"
    folders = c.pop("source_dirs", None)
    if folders:  # folders of one's own (tests, quick experiments)
        log(f"prepare: corpus from folders {folders}")
        build_corpus(
            corpus_dir,
            tokenizer=tokenizer_dir,
            source_dirs=[Path(str(s)).expanduser() for s in folders],
            max_documents=c.get("max_documents"),
            val_fraction=float(c.get("val_fraction", 0.01)),
            decontaminate=c.get("decontaminate", True),
            **options,
        )
    else:  # a named, pinned source (configs/corpus/<source>.yaml) with overrides
        name = str(c.pop("source", "stdlib"))
        log(f"prepare: corpus from source {name} {c or ''}")
        build_named_corpus(name, corpus_dir, tokenizer_dir, c, **options)
    return tokenizer_dir, corpus_dir


def prepare_exec_data(
    prepare: dict[str, Any], out: Path, log: Callable[[str], None]
) -> tuple[Path, Path]:
    """The exec benchmark (`prepare.exec`: build_exec_benchmark's settings, `expect_fingerprint`
    optional) under `<out>/prepare/exec`, rebuilt only when its settings change, and a code BPE
    trained on its train split (`prepare.tokenizer.vocab_size`)."""
    from hrm_codegen.evaluation.exec_build import build_exec_benchmark
    from hrm_codegen.training.data import auto_tokenizer_dir

    settings = dict(prepare["exec"])
    expect = settings.pop("expect_fingerprint", None)
    # shared by every study with the same settings (the build takes minutes and is deterministic)
    from hrm_codegen.tokenization import hrm_codegen_home

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = hrm_codegen_home() / "exec" / f"exec-{digest}"
    meta = read_json(folder / "meta.json")
    wanted = {"seed": 0, **settings}
    built = meta.get("settings", {})
    if not meta or any(built.get(k) != v for k, v in wanted.items() if k in built):
        log(f"prepare: exec benchmark {settings}")
        meta = build_exec_benchmark(folder, **settings, log=log)
    else:
        log(f"{folder} is up to date (same settings); nothing to do")
    log(f"exec benchmark {folder}: fingerprint {meta['fingerprint']}")
    if expect and meta["fingerprint"] != expect:
        raise StudyConfigError(
            f"the exec benchmark built here has fingerprint {meta['fingerprint']}, the study "
            f"expects {expect} (prepare.exec.expect_fingerprint): another Python or generator "
            "version changes the programs; rebuild on the pinned Python or update the pin"
        )
    tok_cfg = dict(prepare.get("tokenizer") or {})
    data_cfg = {"stage": "sft", "benchmark": "exec", "path": str(folder), "train_split": "train"}
    log("prepare: tokenizer (code BPE on the exec train split)")
    tokenizer_dir = auto_tokenizer_dir(
        {"vocab_size": int(tok_cfg.get("vocab_size", 1024)), "stdlib_mb": 0},
        data_cfg,
        out / "prepare",
    )
    return tokenizer_dir, folder


class StudyRunner:
    """One study in one output folder; `run()` does whatever is not done yet."""

    def __init__(
        self,
        spec: StudySpec,
        output_dir: str | Path,
        *,
        compose: Callable[[list[str]], Any] = compose_training_config,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.out = Path(output_dir).expanduser()
        self.compose = compose
        self.log = log or _print_now
        self.tokenizer_dir: Path | str | None = None
        self.corpus_dir: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for the worker processes (`jobs` > 1): they log to their own files."""
        return {**self.__dict__, "log": _print_now}

    # ------------------------------------------------------------------ data

    def prepare(self) -> tuple[Path, Path]:
        """The study's tokenizer folder and corpus folder, built under `<out>/prepare` once."""
        self.tokenizer_dir, self.corpus_dir = prepare_study_data(
            self.spec.prepare, self.out, self.spec.mbpp_path, self.log
        )
        return self.tokenizer_dir, self.corpus_dir

    # ------------------------------------------------------------------ training

    def overrides(self, key: RunKey) -> list[str]:
        """Every Hydra override of one run, in the order they apply."""
        spec = self.spec
        stage = spec.pretrain if key.stage == "pretrain" else spec.sft
        assert stage is not None
        out = [
            *spec.common,
            *stage.overrides,
            *spec.arm_overrides(key.arm),
            f"experiment_name=study-{spec.name}",
            f"seed={key.seed}",
            f"train.lr={key.lr * stage.lr_scale!r}",
            *stage.budget_overrides(
                spec.step_scale.get(key.arm, 1.0) if key.stage == "pretrain" else 1.0
            ),
            f"run_dir={key.path(self.out)}",
        ]
        if spec.mbpp_path:
            out.append(f"eval.mbpp_path={spec.mbpp_path}")
        if key.stage == "pretrain" and self.spec.prepare.get("exec"):  # from scratch on exec
            out += [f"tokenizer.path={self.tokenizer_dir}", f"data.path={self.corpus_dir}"]
        elif key.stage == "pretrain":
            out += [f"tokenizer.path={self.tokenizer_dir}", f"data.shard_dir={self.corpus_dir}"]
        else:
            source = RunKey("pretrain", spec.base_arm(key.arm), key.lr, key.seed)
            out += [f"init_from={source.path(self.out)}", f"eval.bpb_corpus={self.corpus_dir}"]
            if spec.mbpp_path:
                out.append(f"data.path={spec.mbpp_path}")
        return out

    # ------------------------------------------------------------------ status and records

    def records_root(self) -> Path | None:
        """`<records_dir>/runs` (relative paths from the repository root), or None."""
        if not self.spec.records_dir:
            return None
        root = Path(str(self.spec.records_dir)).expanduser()
        return (root if root.is_absolute() else CONFIG_DIR.parent / root) / "runs"

    def record_dir(self, key: RunKey) -> Path | None:
        root = self.records_root()
        return None if root is None else root / key.path(Path(".")).relative_to("runs")

    def status(self, key: RunKey) -> str:
        """done / diverged / partial / new: the run's own folder, else its committed record."""
        local = run_status(key.path(self.out))
        if local != "new":
            return local
        return record_status(self.record_dir(key))

    def source(self, key: RunKey) -> Path:
        """The folder that stands for a run: its own when finished here, else its record."""
        run_dir = key.path(self.out)
        if run_status(run_dir) in ("done", "diverged"):
            return run_dir
        record = self.record_dir(key)
        return record if record is not None and is_recorded(record) else run_dir

    def write_record(self, key: RunKey) -> None:
        """The run's record, when it finished here and the study keeps records."""
        record, run_dir = self.record_dir(key), key.path(self.out)
        if record is not None and run_status(run_dir) in ("done", "diverged"):
            write_record(run_dir, record, model_facts)

    def write_records(self) -> int:
        """Records of every run finished here (e.g. before a session ends); returns how many."""
        keys = self.keys()
        done = [k for k in keys["sweep"] + keys["seeds"] + keys["sft"]]
        written = 0
        for key in done:
            if run_status(key.path(self.out)) in ("done", "diverged"):
                self.write_record(key)
                written += 1
        return written

    def restore(self, key: RunKey) -> str:
        """Make a recorded run's weights exist here (a later stage starts from them): train it
        again and record whether it logged the record's floats bit for bit."""
        from hrm_codegen.training.repeat import compare_runs

        if run_status(key.path(self.out)) in ("done", "diverged"):
            return "here"
        record = self.record_dir(key)
        self.log(f"restore {key.stage} {key.arm} lr={key.lr:g} seed={key.seed} from its record")
        status = self._train_here(key)
        if record is not None and is_recorded(record):
            result = compare_runs(record, key.path(self.out))
            verdict = {"identical": result.identical, "differing": result.differing}
            (key.path(self.out) / REPRODUCED_FILE).write_text(json.dumps(verdict) + "\n")
            self.log(f"  logged the record's floats again bit for bit: {result.identical}")
        self.write_record(key)
        return status

    # ------------------------------------------------------------------ training

    def train(self, key: RunKey) -> str:
        """Train one run unless it is done (here or in its record); returns its final status."""
        status = self.status(key)
        if status in ("done", "diverged"):
            self.write_record(key)
            return status
        status = self._train_here(key)
        self.write_record(key)
        return status

    def _train_here(self, key: RunKey, extra: tuple[str, ...] = ()) -> str:
        from hrm_codegen.train_cli import run_training
        from hrm_codegen.training import NonFiniteLossError

        run_dir = key.path(self.out)
        status = run_status(run_dir)
        # the study's thread split, explicitly: `threads.intra_op=auto` would measure the load
        # of this study's own other workers
        executor = getattr(self.spec, "executor", None)
        remote = executor is not None and executor.kind != "local"  # a job's CPUs are its own
        threads = self.spec.threads or (
            executor.cpus_per_run if remote else threads_per_job(self.spec.jobs)
        )
        overrides = [*self.overrides(key), f"threads.intra_op={threads}", *extra]
        if status == "partial":
            overrides.append("resume=true")
            self.log(f"resume {run_dir}")
        else:
            if run_dir.exists():  # started but never checkpointed: start over cleanly
                shutil.rmtree(run_dir)
            self.log(f"train {key.stage} {key.arm} lr={key.lr:g} seed={key.seed}")
        try:
            run_training(self.compose(overrides))
        except NonFiniteLossError as error:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / FAILED_FILE).write_text(f"{error}\n")
            self.log(f"  diverged: {error}")
            return "diverged"
        return run_status(run_dir)

    def selected_lr(self, arm: str) -> float:
        """The swept lr with the lowest final selection metric on the first seed (ties: smaller lr);
        a fine-tuning-only arm takes its pretraining arm's."""
        arm = self.spec.base_arm(arm)
        seed = self.spec.seeds[0]
        scores = [
            (
                final_metric(
                    self.source(RunKey("pretrain", arm, lr, seed)), self.spec.select_metric
                ),
                lr,
            )
            for lr in self.spec.lr_sweep
        ]
        return min(scores)[1]

    def keys(self) -> dict[str, list[RunKey]]:
        """The runs of the protocol that can be named now (selection needs the sweep done)."""
        spec = self.spec
        sweep = [
            RunKey("pretrain", arm, lr, spec.seeds[0]) for arm in spec.arms for lr in spec.lr_sweep
        ]
        out: dict[str, list[RunKey]] = {"sweep": sweep, "seeds": [], "sft": []}
        if all(self.status(k) in ("done", "diverged") for k in sweep):
            for arm in spec.all_arms:
                lr = self.selected_lr(arm)
                if arm in spec.arms:
                    out["seeds"] += [RunKey("pretrain", arm, lr, s) for s in spec.seeds[1:]]
                if spec.sft is not None:
                    # named by the pretraining lr it starts from; trains at lr x sft.lr_scale
                    out["sft"] += [RunKey("sft", arm, lr, s) for s in spec.seeds]
        return out

    # ------------------------------------------------------------------ evaluations

    def _eval_cache(self, run_dir: Path) -> dict[str, Any]:
        return read_json(run_dir / EVAL_FILE)

    def _save_eval(self, run_dir: Path, cache: dict[str, Any]) -> None:
        tmp = run_dir / f"{EVAL_FILE}.tmp"
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        tmp.replace(run_dir / EVAL_FILE)

    def test_time_compute(self, key: RunKey) -> dict[str, float]:
        """val/bpb of a pretrained HRM with H or L cycles scaled by each multiplier (cached)."""
        from omegaconf import OmegaConf

        from hrm_codegen.bpb import batched, dataset_bpb, token_byte_lengths
        from hrm_codegen.evaluation.likelihood import bpb_dataset
        from hrm_codegen.tokenization import load_tokenizer

        if self.status(key) != "done":
            return {}
        cache = self._eval_cache(self.source(key))
        if cache.get("test_time_applicable") is False:
            return {}
        wanted = ["x1"] + [
            f"{m_}_x{m}" for m in self.spec.test_time_multipliers if m != 1 for m_ in ("H", "L")
        ]
        if all(name in cache.get("test_time", {}) for name in wanted):
            return cache["test_time"]
        self.restore(key)  # the weights, when only the record is here
        run_dir = key.path(self.out)
        cache = {**cache, **self._eval_cache(run_dir)}
        results: dict[str, float] = cache.get("test_time", {})
        from hrm_codegen.model import load_model

        ckpt = run_dir / CHECKPOINT_DIR
        model = load_model(ckpt).eval()
        if not getattr(model, "recurrent", False):
            cache["test_time_applicable"] = False  # a model without recurrence to scale
            self._save_eval(run_dir, cache)
            self.write_record(key)
            return {}
        todo = [("x1", None, None)]
        for m in self.spec.test_time_multipliers:
            if m != 1:
                todo += [(f"H_x{m}", model.config.H_cycles * m, None)]
                todo += [(f"L_x{m}", None, model.config.L_cycles * m)]
        todo = [t for t in todo if t[0] not in results]
        if not todo:
            return results
        cfg = OmegaConf.load(run_dir / CONFIG_SNAPSHOT)
        tokenizer = load_tokenizer(ckpt)
        windows, collate, _ = bpb_dataset(
            "corpus", tokenizer, corpus_dir=self.corpus_dir, seq_len=int(cfg.data.max_seq_len)
        )
        lengths = token_byte_lengths(tokenizer)
        size, max_batches = int(cfg.eval.batch_size), cfg.eval.max_batches
        for name, h_cycles, l_cycles in todo:
            self.log(f"test-time compute {key.arm} seed={key.seed} {name}")
            model.set_inference_schedule(h_cycles=h_cycles, l_cycles=l_cycles)
            totals = dataset_bpb(model, batched(windows, collate, size, max_batches), lengths)
            results[name] = totals.bpb
        model.set_inference_schedule()
        cache["test_time"] = results
        self._save_eval(run_dir, cache)
        self.write_record(key)
        return results

    def pass_at_k(self, key: RunKey) -> dict[str, Any]:
        """Unbiased pass@k from sampling the fine-tuned model on MBPP validation tasks (cached)."""
        p = self.spec.pass_at_k
        if p is None or self.status(key) != "done":
            return {}
        cache = self._eval_cache(self.source(key))
        if "pass_at_k" in cache:
            return cache["pass_at_k"]
        self.restore(key)  # the weights, when only the record is here
        run_dir = key.path(self.out)
        cache = {**cache, **self._eval_cache(run_dir)}
        from hrm_codegen.data import load_benchmark
        from hrm_codegen.evaluation.harness import evaluate_model
        from hrm_codegen.evaluation.sampling import SamplingSettings
        from hrm_codegen.model import load_model
        from hrm_codegen.tokenization import load_tokenizer

        ckpt = run_dir / CHECKPOINT_DIR
        tasks = load_benchmark("mbpp", split=p.split, path=self.spec.mbpp_path)
        tasks = tasks[: p.limit] if p.limit else tasks
        self.log(f"pass@k {key.arm} seed={key.seed}: {p.num_samples} samples x {len(tasks)} tasks")
        summary = evaluate_model(
            load_model(ckpt).eval(),
            load_tokenizer(ckpt),
            tasks,
            num_samples=p.num_samples,
            ks=p.ks,
            sampling=SamplingSettings(
                temperature=p.temperature,
                top_p=p.top_p,
                max_new_tokens=p.max_new_tokens,
                batch_size=p.batch_size,
                seed=key.seed,
            ),
            timeout=p.timeout,
            output_dir=run_dir / "passk",
            progress=False,
        )
        result = {
            **{k: float(v) for k, v in summary.pass_at_k.items()},
            "num_samples": p.num_samples,
            "tasks": len(tasks),
            "temperature": p.temperature,
            "split": p.split,
        }
        cache["pass_at_k"] = result
        self._save_eval(run_dir, cache)
        self.write_record(key)
        return result

    def exec_accuracy(self, key: RunKey) -> dict[str, Any]:
        """Exact-match accuracy on the exec test splits by step bucket, at the trained depth and
        (recurrent arms) at each test-time multiplier of the H cycles; for an ACT model also the
        segments its Q head asks for against the steps (cached in the run's eval file)."""
        e = self.spec.exec_eval
        if e is None or self.status(key) != "done":
            return {}
        cache = self._eval_cache(self.source(key))
        results: dict[str, Any] = dict(cache.get("exec", {}))
        multipliers = self.spec.test_time_multipliers
        wanted = [f"x{m}" for m in multipliers] if cache.get("exec_recurrent", True) else ["x1"]
        if results and all(name in results for name in wanted):
            return results
        self.restore(key)  # the weights, when only the record is here
        run_dir = key.path(self.out)
        cache = {**cache, **self._eval_cache(run_dir)}
        from hrm_codegen.data.exec_programs import load_exec_tasks
        from hrm_codegen.evaluation.exec_score import act_segments, score_exec_model
        from hrm_codegen.model import load_model
        from hrm_codegen.tokenization import load_tokenizer

        ckpt = run_dir / CHECKPOINT_DIR
        model, tokenizer = load_model(ckpt).eval(), load_tokenizer(ckpt)
        recurrent = bool(getattr(model, "recurrent", False))
        cache["exec_recurrent"] = recurrent
        edges = read_json(Path(str(self.corpus_dir)) / "meta.json")["edges"]
        splits = {
            s: load_exec_tasks(self.corpus_dir, s)[: e.limit] if e.limit else
            load_exec_tasks(self.corpus_dir, s) for s in e.splits
        }  # fmt: skip
        for m in multipliers if recurrent else (1,):
            if f"x{m}" in results:
                continue
            self.log(f"exec accuracy {key.arm} seed={key.seed} x{m}")
            if recurrent:
                model.set_inference_schedule(h_cycles=model.config.H_cycles * m)
            results[f"x{m}"] = {
                split: score_exec_model(
                    model,
                    tokenizer,
                    tasks,
                    edges=edges,
                    max_new_tokens=e.max_new_tokens,
                    batch_size=e.batch_size,
                )  # fmt: skip
                for split, tasks in splits.items()
            }
            if recurrent:
                model.set_inference_schedule()
        act = getattr(model, "q_head", None) is not None and model.config.halt_max_steps > 1
        if act and "act" not in results:
            results["act"] = {
                split: act_segments(model, tokenizer, t) for split, t in splits.items()
            }
        cache["exec"] = results
        self._save_eval(run_dir, cache)
        self.write_record(key)
        return results

    # ------------------------------------------------------------------ the whole study

    def run(self, publish_dir: str | Path | None = None, command: str = "") -> Path:
        """Everything not yet done, then the report; returns the path of report.md."""
        from hrm_codegen.study.report import write_report

        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.for_each("train", self.keys()["sweep"])
        keys = self.keys()
        # the first seed's fine-tuning starts from sweep runs; a later seed's waits for its seed run
        first = self.spec.seeds[0]
        self.for_each("restore", self._starts_to_restore(keys))
        self.for_each("train", keys["seeds"] + [k for k in keys["sft"] if k.seed == first])
        self.for_each("train", [k for k in keys["sft"] if k.seed != first])
        selected = [
            RunKey("pretrain", arm, self.selected_lr(arm), seed)
            for arm in self.spec.arms
            for seed in self.spec.seeds
        ]
        if self.spec.exec_eval is not None:  # exec studies: accuracy instead of corpus bpb
            self.for_each("exec_accuracy", selected)
        elif len(self.spec.test_time_multipliers) > 1:
            self.for_each("test_time_compute", selected)
        self.for_each("pass_at_k", keys["sft"])
        self._record_session(time.perf_counter() - start, command)
        return write_report(self, publish_dir=publish_dir, command=command)

    def _starts_to_restore(self, keys: dict[str, list[RunKey]]) -> list[RunKey]:
        """Pretraining runs that are only records here but that a fine-tuning run still to train
        (or a fine-tuned run still to sample) starts from: restored once each, before the
        workers need them (two workers restoring one run would collide)."""
        needed: list[RunKey] = []
        for key in keys["sft"]:
            ready = self.status(key) == "done" and (
                run_status(key.path(self.out)) == "done"
                or "pass_at_k" in self._eval_cache(self.source(key))
                or self.spec.pass_at_k is None
            )
            start = RunKey("pretrain", self.spec.base_arm(key.arm), key.lr, key.seed)
            local = run_status(start.path(self.out)) == "done"
            if not ready and not local and self.status(start) == "done" and start not in needed:
                needed.append(start)
        return needed

    def for_each(self, method: str, keys: list[RunKey]) -> None:
        """`self.<method>(key)` for every key: in this process when `jobs` is 1, else in `jobs`
        spawned workers; the first failure stops the rest and is raised here. Each finished key
        is logged as it finishes, with its count and an ETA from the mean time per key so far."""
        if method == "train":  # runs done here or recorded take no time: not in the ETA
            finished = [k for k in keys if self.status(k) in ("done", "diverged")]
            for key in finished:
                self.write_record(key)
            if finished:
                self.log(
                    f"train: {len(finished)} of {len(keys)} runs done already (here or recorded)"
                )
            keys = [k for k in keys if k not in finished]
        if not keys:
            return
        progress = _Progress(method, len(keys), self.log)
        executor = getattr(self.spec, "executor", None)
        if executor is not None and executor.kind != "local":  # Slurm jobs or Ray tasks
            from hrm_codegen.study.executors import run_keys

            run_keys(self, method, keys, progress, _run_in_worker)
            return
        jobs = min(self.spec.jobs, len(keys))
        if jobs <= 1:
            for key in keys:
                result = getattr(self, method)(key)
                progress.done(key, result)
            return
        from hrm_codegen.study.executors import gpu_groups, visible_gpus

        threads = threads_per_job(jobs)
        # with GPUs, each worker its own (more workers than GPUs is refused); CPU runs as before
        groups = gpu_groups(visible_gpus(), jobs) if _uses_gpus(self.spec) else []
        gpu_note = f", GPUs {' | '.join(groups)}" if groups else ""
        self.log(
            f"{method}: {len(keys)} runs, {jobs} at a time ({threads} thread(s) each{gpu_note})"
        )
        context = multiprocessing.get_context("spawn")
        devices = context.Manager().Queue() if groups else None
        for group in groups:
            devices.put(group)
        pool = ProcessPoolExecutor(
            jobs,
            mp_context=context,
            initializer=_init_worker,
            initargs=(threads, devices),
        )
        try:
            futures = {pool.submit(_run_in_worker, self, method, key): key for key in keys}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    progress.done(futures[future], future.result())  # raises the worker's error
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def log_path(self, method: str, key: RunKey) -> Path:
        """Where a worker writes the output of `method` on `key`."""
        name = f"{lr_tag(key.lr)}-seed{key.seed}.{method}.log"
        return self.out / "logs" / key.stage / key.arm / name

    def _record_session(self, seconds: float, command: str) -> None:
        """Append this invocation's wall time to `<out>/sessions.json` (a resumed study sums them)."""
        path = self.out / "sessions.json"
        sessions = json.loads(path.read_text()) if path.is_file() else []
        sessions.append(
            {
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": round(seconds, 1),
                "command": command,
            }
        )
        path.write_text(json.dumps(sessions, indent=2) + "\n")


class _Progress:
    """ "[i/N]" lines with the elapsed time and an ETA, one per finished key (a study's runs take
    minutes each, so a line per run is the progress bar that stays honest in a log file)."""

    def __init__(self, method: str, total: int, log: Callable[[str], None]) -> None:
        self.method, self.total, self.log = method, total, log
        self.finished = 0
        self.start = time.perf_counter()

    def done(self, key: RunKey, result: Any) -> None:
        self.finished += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.finished * (self.total - self.finished)
        status = result if isinstance(result, str) else "ok"
        self.log(
            f"  {self.method} {key.stage} {key.arm} lr={key.lr:g} seed={key.seed}: {status} "
            f"[{self.finished}/{self.total}, {_minutes(elapsed)} elapsed, ETA {_minutes(eta)}]"
        )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _print_now(message: str) -> None:
    """The default log: printed at once, also when stdout is a file (progress of a long study)."""
    print(message, flush=True)


def _uses_gpus(spec: Any) -> bool:
    """Whether a study's runs train on GPUs (`device=cpu` in its shared settings: no)."""
    return "device=cpu" not in tuple(getattr(spec, "common", ()))


def _init_worker(threads: int, devices: Any = None) -> None:
    """A local worker: its GPU(s) (`CUDA_VISIBLE_DEVICES`, before anything touches CUDA) and
    its CPU threads."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(runner: StudyRunner, method: str, key: RunKey) -> Any:
    """One job in a worker process, its output appended to the run's log file."""
    path = runner.log_path(method, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("a") as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        try:
            return getattr(runner, method)(key)
        except Exception as error:
            # the pool pickles the error back to the study; one that cannot be rebuilt there
            # (Hydra's OverrideParseException) would break the pool and hide its message
            try:
                pickle.loads(pickle.dumps(error))
            except Exception:
                raise RuntimeError(f"{type(error).__name__}: {error}") from None
            raise
