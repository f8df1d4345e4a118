"""Generation throughput with and without the KV cache, as a table.

    python scripts/bench_generate.py --device cuda --dtype bfloat16 --batch-size 8 --new-tokens 256
    python scripts/bench_generate.py --size tiny --prompt-len 64 --new-tokens 32   # quick, on CPU

Models are randomly initialised (speed does not depend on the weights) and decode greedily with no EOS.
"""

from __future__ import annotations

import argparse

import torch

from hrm_codegen.generation import measure_throughput
from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM

SIZES = {
    "tiny": dict(hidden_size=64, num_heads=4),
    "reference": {},  # the paper's HRM (hidden 512, 4+4 layers, 2x2 cycles) and matching baselines
}


def build_model(name: str, size: str, vocab_size: int, max_seq_len: int):
    common = dict(vocab_size=vocab_size, max_seq_len=max_seq_len, **SIZES[size])
    small = size == "tiny"
    if name == "hrm":
        return HRMForCausalLM(
            HRMConfig(**common, **(dict(H_layers=2, L_layers=2) if small else {}))
        )
    if name == "transformer-param":
        return TransformerForCausalLM(TransformerConfig.param_matched(**common))
    if name == "transformer-compute":
        return TransformerForCausalLM(TransformerConfig.compute_matched(**common))
    raise ValueError(f"unknown model {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--models", default="hrm,transformer-param,transformer-compute", help="comma-separated"
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="reference")
    parser.add_argument("--vocab-size", type=int, default=50257)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--skip-uncached", action="store_true", help="time the KV cache only")
    args = parser.parse_args()

    torch.manual_seed(0)
    max_seq_len = args.prompt_len + args.new_tokens
    print(
        f"device={args.device} dtype={args.dtype} size={args.size} batch={args.batch_size} "
        f"prompt={args.prompt_len} new={args.new_tokens}"
    )
    header = f"{'model':<22}{'cache':<7}{'prompt tok/s':>14}{'new tok/s':>12}{'decode s':>10}"
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        model = build_model(name, args.size, args.vocab_size, max_seq_len)
        model = model.to(device=args.device, dtype=getattr(torch, args.dtype))
        for use_cache in [True] if args.skip_uncached else [True, False]:
            result = measure_throughput(
                model,
                batch_size=args.batch_size,
                prompt_len=args.prompt_len,
                new_tokens=args.new_tokens,
                use_cache=use_cache,
            )
            print(
                f"{name:<22}{'yes' if use_cache else 'no':<7}"
                f"{result['prompt_tokens_per_s']:>14,.0f}{result['new_tokens_per_s']:>12,.1f}"
                f"{result['decode_s']:>10.2f}"
            )
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
