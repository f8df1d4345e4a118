"""The fixed settings of the check: step names, which reference models each step uses, the two
size sets (`REAL` for a lent GPU, `TINY` for `--tiny` on a CPU), the budget deadlines of steps 2 and
3, and `CheckOptions`, what the command line asks for. It sits at the bottom of the package and
imports nothing from it, so every step module can read the sizes without pulling in the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
