"""Compare every logged float of two training runs, bit for bit (timings aside).

python scripts/compare_runs.py runs/a runs/b     # exit 0 when identical, 1 when they differ

Prints where the runs part (first differing step and metric), how far apart their final losses
and bpb are, and any difference in what they recorded of their data and environment (corpus and
tokenizer fingerprints, threads, library versions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrm_codegen.training.repeat import compare_runs, comparison_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args()
    for run in (args.run_a, args.run_b):
        if not (run / "metrics.jsonl").is_file():
            parser.error(f"{run} has no metrics.jsonl: pass two run folders")
    result = compare_runs(args.run_a, args.run_b)
    print(comparison_text(args.run_a, args.run_b, result))
    sys.exit(0 if result.identical else 1)


if __name__ == "__main__":
    main()
