"""Quantization table: fp32 / bf16 / int8 / int8-dynamic / int4 on a trained checkpoint and the
reference HRM and parameter-matched transformer (random weights: speed and size only).

    python scripts/bench_quantization.py --ckpt runs/quickstart --mbpp-problems 10
    python scripts/bench_quantization.py --only-ckpt --ckpt runs/quickstart   # skip the references
    python scripts/bench_quantization.py --tokenizer gpt2 --windows 4          # references only

Every variant runs in its own process (peak RSS is its own). Agreement and bpb are
teacher-forced on standard-library modules (held out from MBPP training); random weights are not
a quality test, so read those columns on the trained model. See hrm_codegen/quantization_bench.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hrm_codegen.quantization_bench import (
    VARIANTS,
    VariantSpec,
    format_table,
    held_out_windows,
    run_variants,
)

REFERENCES = ("HRM (4+4 layers, 2x2 cycles)", "Transformer 8L (param-matched)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", help="a trained checkpoint of ours (its rows come first)")
    parser.add_argument("--only-ckpt", action="store_true", help="skip the reference models")
    parser.add_argument(
        "--references", nargs="*", default=["HRM", "Transformer"], help="reference rows to run"
    )
    parser.add_argument(
        "--tokenizer", help="tokenizer for the text and the reference vocab (default: the ckpt's)"
    )
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--windows", type=int, default=8, help="held-out windows scored")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32, help="decode tokens timed")
    parser.add_argument("--mbpp-problems", type=int, default=0, help="MBPP test tasks timed (ckpt)")
    parser.add_argument(
        "--mbpp-variants", nargs="*", default=["fp32", "int8"], help="variants MBPP latency times"
    )
    parser.add_argument("--repeats", type=int, default=2, help="decode timings, best kept")
    parser.add_argument("--threads", type=int, help="torch threads per variant")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from hrm_codegen.evaluation.harness import resolve_model_dir
    from hrm_codegen.tokenization import load_tokenizer

    if "fp32" not in args.variants:
        args.variants.insert(0, "fp32")  # the reference of agreement and bpb change
    args.variants.sort(key=VARIANTS.index)
    ckpt = str(resolve_model_dir(args.ckpt)) if args.ckpt else None
    tokenizer_path = args.tokenizer or ckpt
    if (
        args.tokenizer
        and Path(args.tokenizer).is_dir()
        and not Path(args.tokenizer, "tokenizer.json").is_file()
    ):
        tokenizer_path = str(resolve_model_dir(args.tokenizer))  # a run folder: its checkpoint's
    if tokenizer_path is None:
        print("error: give --ckpt or --tokenizer (the held-out text is tokenized)", file=sys.stderr)
        return 2
    tokenizer = load_tokenizer(tokenizer_path)
    windows = held_out_windows(tokenizer, args.seq_len, args.windows)
    common = dict(
        tokenizer=str(tokenizer_path),
        windows=windows,
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens,
        threads=args.threads,
        repeats=args.repeats,
    )
    specs = []
    if ckpt is not None:
        prompts, stop = [], []
        if args.mbpp_problems:
            from hrm_codegen.data import load_benchmark
            from hrm_codegen.data.prompts import format_prompt, stop_sequences

            tasks = load_benchmark("mbpp", split="test")[: args.mbpp_problems]
            prompts, stop = [format_prompt(t) for t in tasks], stop_sequences(tasks[0])
        label = f"ckpt {Path(ckpt).parent.name if Path(ckpt).name == 'checkpoint' else ckpt}"
        for variant in args.variants:
            timed = prompts if variant in args.mbpp_variants else []
            specs.append(
                VariantSpec(label, variant, ckpt=ckpt, mbpp_prompts=timed, mbpp_stop=stop, **common)
            )
    if not args.only_ckpt:
        for name in [n for n in REFERENCES if any(n.startswith(r) for r in args.references)]:
            for variant in args.variants:
                specs.append(
                    VariantSpec(name, variant, reference=name, vocab_size=len(tokenizer), **common)
                )
    results = run_variants(
        specs, on_result=lambda r: print(json.dumps(r), file=sys.stderr, flush=True)
    )
    print(
        f"Held-out: {len(windows)} x {args.seq_len} tokens of {tokenizer_path}'s tokenization of "
        f"stdlib modules; decode: {args.prompt_len}-token random prompt, {args.new_tokens} new "
        f"tokens, greedy; reference models: random weights, vocab {len(tokenizer)}."
    )
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
