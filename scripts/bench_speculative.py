"""Speculative decoding with trained models: acceptance, target forwards and wall-clock speed-up.

    python scripts/bench_speculative.py --target RUN/best --draft OTHER_RUN/best \\
        --exec-dir ~/.cache/hrm_codegen/exec/exec-<hash> --split test --problems 100

Decodes the first --problems prompts of an exec benchmark split (the trace-the-program tasks of
study=cpu_exec; both checkpoints must share its tokenizer) greedily, batch 1, once with the
target alone and once per --draft-tokens k with the draft proposing k tokens a round. Prints
one table: acceptance (accepted / proposed draft tokens), tokens per target forward, median and
total seconds, the speed-up over plain decoding, and whether every output equals plain
decoding's (speculative decoding must not change a token). `bench_inference.py` times random
models, whose acceptance is its worst case; this is the trained case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help="checkpoint folder of the target model")
    parser.add_argument("--draft", required=True, help="checkpoint folder of the draft model")
    parser.add_argument("--exec-dir", required=True, help="a built exec benchmark folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--draft-tokens", default="1,2,4", help="comma-separated k values")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        args.draft_tokens = [int(k) for k in args.draft_tokens.split(",")]
    except ValueError:
        parser.error(f"--draft-tokens {args.draft_tokens!r}: give integers such as 1,2,4")
    if args.problems < 1 or min(args.draft_tokens) < 1:
        parser.error("--problems and every --draft-tokens value must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from hrm_codegen.data.exec_programs import load_exec_tasks
    from hrm_codegen.evaluation.harness import load_model_and_tokenizer
    from hrm_codegen.generation import encode_prompt, generate_ids
    from hrm_codegen.inference.speculative import SpeculativeDraft
    from hrm_codegen.model.registry import model_type_of_dir

    torch.set_num_threads(args.threads)
    loaded = {}
    for role in ("target", "draft"):
        folder = Path(getattr(args, role))
        loaded[role] = load_model_and_tokenizer(model_type_of_dir(folder), folder, device="cpu")
    (target, tokenizer), (draft_model, draft_tokenizer) = loaded["target"], loaded["draft"]
    if tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        raise SystemExit("--draft has another tokenizer than --target; they must share one")
    tasks = load_exec_tasks(args.exec_dir, args.split)[: args.problems]
    prompts = [encode_prompt(tokenizer, task.prompt()) for task in tasks]
    options = dict(max_new_tokens=args.max_new_tokens, eos_token_id=tokenizer.eos_token_id)

    def decode(draft: SpeculativeDraft | None) -> tuple[list[list[int]], list[float]]:
        outputs, seconds = [], []
        for prompt in prompts:
            start = time.perf_counter()
            out = generate_ids(target, [prompt], batch_size=1, draft=draft, **options)
            seconds.append(time.perf_counter() - start)
            outputs.append(out[0][0])
        return outputs, seconds

    decode(None)  # warm-up: first calls allocate
    plain, plain_s = decode(None)
    header = (
        "| draft tokens k | acceptance | tokens per target forward | median s | total s | "
        "speed-up | outputs = plain |"
    )
    rows = [header, "|" + "---|" * 7]
    rows.append(
        f"| - (target alone) | - | 1.00 | {statistics.median(plain_s):.4f} | "
        f"{sum(plain_s):.2f} | 1.00x | - |"
    )
    for k in args.draft_tokens:
        draft = SpeculativeDraft(draft_model, k)
        outputs, seconds = decode(draft)
        same = sum(a == b for a, b in zip(outputs, plain))
        rows.append(
            f"| {k} | {draft.acceptance_rate:.1%} | {draft.tokens_per_target_forward:.2f} | "
            f"{statistics.median(seconds):.4f} | {sum(seconds):.2f} | "
            f"{sum(plain_s) / sum(seconds):.2f}x | {same}/{len(outputs)} |"
        )
    print(
        f"target {args.target} ({sum(p.numel() for p in target.parameters()):,} parameters), "
        f"draft {args.draft} ({sum(p.numel() for p in draft_model.parameters()):,}); "
        f"{len(prompts)} {args.split} prompts, up to {args.max_new_tokens} new tokens, "
        f"{args.threads} thread(s)"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
