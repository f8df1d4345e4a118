"""Benchmark the reference HRM and both transformer baselines; prints a Markdown table.

python scripts/bench_model.py                      # CPU, float32, ~3-5 minutes on 2 cores
python scripts/bench_model.py --device cuda --steps 10 --new-tokens 64
"""

from __future__ import annotations

import argparse

import torch

from hrm_codegen.model.benchmark import format_table, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vocab-size", type=int, default=50257, help="default: GPT-2's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per model")
    parser.add_argument("--decode-batch-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--uncached-new-tokens",
        type=int,
        default=None,
        help="new tokens for the no-cache decode (default: --new-tokens on CUDA, at most 4 on CPU, "
        "where every step re-runs the whole sequence)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="bf16 autocast or plain float32 (default: bfloat16 on CUDA, float32 on CPU)",
    )
    parser.add_argument("--only", nargs="*", help="benchmark only models whose name contains these")
    args = parser.parse_args()

    on_cuda = args.device.startswith("cuda")
    dtype_name = args.dtype or ("bfloat16" if on_cuda else "float32")
    autocast = torch.bfloat16 if dtype_name == "bfloat16" else None
    uncached = args.uncached_new_tokens or (args.new_tokens if on_cuda else min(4, args.new_tokens))
    results = run_benchmark(
        vocab_size=args.vocab_size,
        device=args.device,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        decode_batch_size=args.decode_batch_size,
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens,
        uncached_new_tokens=uncached,
        autocast_dtype=autocast,
        only=args.only,
    )
    if on_cuda:
        device_name = torch.cuda.get_device_name(args.device)
    else:
        device_name = f"CPU, {torch.get_num_threads()} threads"
    header = (
        f"{device_name}, {dtype_name}, vocab {args.vocab_size}. Train: batch {args.batch_size} x "
        f"{args.seq_len} tokens, {args.steps} timed step(s). Decode (greedy, prefill included): batch "
        f"{args.decode_batch_size}, {args.prompt_len}-token prompt, {args.new_tokens} new tokens with "
        f"cache, {uncached} without."
    )
    print(format_table(results, header))


if __name__ == "__main__":
    main()
