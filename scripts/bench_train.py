"""Training tokens/s and MFU of the reference HRM and both transformer baselines.

    python scripts/bench_train.py                       # CPU (or CUDA when available)
    python scripts/bench_train.py --device cuda --dtype bf16 --batch-size 32 --seq-len 1024

MFU = model FLOPs per token (hrm_codegen/training/flops.py) x tokens/s / peak FLOP/s. Peak: the GPU
table (A100/H100/H200 bf16), a CPU estimate from /proc/cpuinfo, or --peak-flops.
"""

import argparse

from hrm_codegen.training.bench import REFERENCE_MODELS, run_bench


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", default=",".join(REFERENCE_MODELS), help="configs/model names")
    parser.add_argument("--vocab-size", type=int, default=16384, help="code BPE default size")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--peak-flops", type=float, default=None, help="override peak FLOP/s")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    table = run_bench(
        [m for m in args.models.split(",") if m],
        vocab_size=args.vocab_size,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        dtype=args.dtype,
        peak_override=args.peak_flops,
        compile_model=args.compile,
    )
    print(table)


if __name__ == "__main__":
    main()
