"""Generation throughput with and without the KV cache, as a table.

    python scripts/bench_generate.py --device cuda --dtype bfloat16 --batch-size 8 --new-tokens 256
    python scripts/bench_generate.py --size tiny --prompt-len 64 --new-tokens 32   # quick, on CPU
    python scripts/bench_generate.py --compile --skip-uncached     # torch.compile'd decode steps

Models are randomly initialised (speed does not depend on the weights) and decode greedily with no EOS.
The "ragged" column decodes with EOS forced on rows whose last token is a multiple of
--ragged-every, so rows finish at different steps (how finished rows are handled shows there):
new tokens/s over the whole call, prefill included.
"""

from __future__ import annotations

import argparse
import inspect
import time

import torch
from torch import nn

from hrm_codegen.generation import generate_ids, measure_throughput
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


class RaggedEos(nn.Module):
    """Wraps a model so that a row ends (EOS = token 0) after a token that is a multiple of `every`:
    a random model then gives rows that finish at scattered steps, the same in every version."""

    def __init__(self, model: nn.Module, every: int):
        super().__init__()
        self.model, self.every, self.config = model, every, model.config

    def allocate_cache(self, *args, **kwargs):
        return self.model.allocate_cache(*args, **kwargs)

    def forward(self, input_ids, **kwargs):
        out = self.model(input_ids, **kwargs)
        ends = input_ids[:, -1] % self.every == 0
        out.logits[:, -1, 0] = torch.where(ends, torch.finfo(out.logits.dtype).max, -1e4)
        return out


def ragged_tokens_per_s(
    model, batch_size: int, prompt_len: int, new_tokens: int, every: int, **options
):
    """(new tokens/s, mean new tokens per row) for a call where rows finish at scattered steps."""
    wrapped = RaggedEos(model, every)
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(
        1, model.config.vocab_size, (batch_size, prompt_len), generator=generator
    )
    options.update(max_new_tokens=new_tokens, eos_token_id=0, batch_size=batch_size)
    generate_ids(wrapped, prompts.tolist(), **options)  # warm-up
    start = time.perf_counter()
    out = generate_ids(wrapped, prompts.tolist(), **options)
    seconds = time.perf_counter() - start
    tokens = sum(len(samples[0]) for samples in out)
    return tokens / seconds, tokens / batch_size


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
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    parser.add_argument("--ragged-every", type=int, default=8, help="see above; 0 = skip")
    args = parser.parse_args()
    compile_option = {}
    if args.compile:
        if "compile" not in inspect.signature(measure_throughput).parameters:
            parser.error("this version of hrm_codegen has no compiled decoding")
        compile_option = {"compile": True}

    torch.manual_seed(0)
    max_seq_len = args.prompt_len + args.new_tokens
    print(
        f"device={args.device} dtype={args.dtype} size={args.size} batch={args.batch_size} "
        f"prompt={args.prompt_len} new={args.new_tokens} compile={args.compile} "
        f"threads={torch.get_num_threads()}"
    )
    header = (
        f"{'model':<22}{'cache':<7}{'prompt tok/s':>14}{'new tok/s':>12}{'decode s':>10}"
        f"{'ragged tok/s':>14}{'(mean new)':>11}"
    )
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
                **(compile_option if use_cache else {}),
            )
            ragged = ""
            if use_cache and args.ragged_every:
                rate, mean_new = ragged_tokens_per_s(
                    model,
                    args.batch_size,
                    args.prompt_len,
                    args.new_tokens,
                    args.ragged_every,
                    **compile_option,
                )
                ragged = f"{rate:>14,.1f}{mean_new:>11.1f}"
            print(
                f"{name:<22}{'yes' if use_cache else 'no':<7}"
                f"{result['prompt_tokens_per_s']:>14,.0f}{result['new_tokens_per_s']:>12,.1f}"
                f"{result['decode_s']:>10.2f}{ragged}"
            )
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
