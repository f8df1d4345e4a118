"""Build the `exec` benchmark: generated Python programs, their answers and step counts from the
sandbox, split by difficulty (executed steps).

python scripts/build_exec_benchmark.py --out data/exec                    # the default sizes
python scripts/build_exec_benchmark.py --out /tmp/exec --train 2000 --test-hard 200 --seed 1

Then: python scripts/evaluate.py --benchmark exec --data data/exec --split test_hard --ckpt RUN ...
The same arguments build the same bytes anywhere (meta.json's fingerprint says so).
"""

from __future__ import annotations

import argparse
import json
import sys

from hrm_codegen.evaluation.exec_build import DEFAULT_EDGES, build_exec_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder to write (replaced when it exists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--test-hard", type=int, default=500)
    parser.add_argument("--train-max-steps", type=int, default=64, help="k: train and test <= k")
    parser.add_argument("--max-steps", type=int, default=512, help="test_hard: k < steps <= this")
    parser.add_argument("--max-depth", type=int, default=2, help="nesting of loops and ifs")
    parser.add_argument("--max-statements", type=int, default=8)
    parser.add_argument("--workers", type=int, help="sandboxed programs at a time (default: cores)")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    args = parser.parse_args(argv)
    sizes = {
        "train": args.train,
        "validation": args.validation,
        "test": args.test,
        "test_hard": args.test_hard,
    }
    try:
        manifest = build_exec_benchmark(
            args.out,
            seed=args.seed,
            sizes={k: v for k, v in sizes.items() if v > 0},
            train_max_steps=args.train_max_steps,
            max_steps=args.max_steps,
            max_depth=args.max_depth,
            max_statements=args.max_statements,
            edges=DEFAULT_EDGES,
            workers=args.workers,
            backend=args.sandbox,
        )
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("generated", "dropped")}, indent=1))
    for split, info in manifest["splits"].items():
        print(f"{split:11s} {info['tasks']:6d} tasks, steps {info['steps']}, {info['buckets']}")
    print(f"fingerprint {manifest['fingerprint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
