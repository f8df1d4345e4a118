"""Plot loss (and pass@1 where logged) against tokens seen for several training runs in one PNG.

python scripts/plot_runs.py runs/quickstart/2025-01-01_12-00-00 runs/quickstart/... --out cmp.png
python scripts/plot_runs.py runs/quickstart/* --out cmp.png   # what is no run is skipped, noted

A path without metrics.jsonl (a folder a failed run left, a PNG beside the runs) is skipped with a
note; it is an error only when no run is left.
"""

import argparse
import sys
from pathlib import Path

from hrm_codegen.training.plot import plot_runs, split_runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run dirs holding metrics.jsonl")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/comparison.png"), help="PNG to write"
    )
    parser.add_argument("--log-x", action="store_true", help="logarithmic tokens axis")
    args = parser.parse_args()
    runs, skipped = split_runs(args.run_dirs)
    for path in skipped:
        print(f"skipping {path}: no metrics.jsonl", file=sys.stderr)
    if not runs:
        parser.error(
            f"none of the {len(skipped)} path(s) holds metrics.jsonl; pass run folders that "
            "scripts/train_codegen.py wrote, e.g. runs/<experiment>/<timestamp>"
        )
    try:
        out = plot_runs(runs, args.out, log_x=args.log_x)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
