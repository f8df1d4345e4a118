"""Set up the Polyglot benchmark's test runners, then check them on exercises.

    python scripts/setup_polyglot.py                      # install jest + babel once (npm)
    python scripts/setup_polyglot.py --check tests/fixtures/polyglot   # run example solutions
    python scripts/setup_polyglot.py --no-install --data DIR --reference-samples refs.jsonl

jest goes to $HRM_CODEGEN_POLYGLOT_CACHE/jest (default ~/.cache/hrm_codegen/polyglot/jest), the
folder the test runner reads, and is used offline from there. The other toolchains come from
system packages (install what is missing; on a system whose nodejs bundles npm, leave npm out):
`apt-get install g++ cmake libboost-date-time-dev nodejs npm cargo librust-time-dev
librust-anyhow-dev librust-rand-dev librust-thiserror-dev golang-go default-jdk-headless junit5
libassertj-core-java` (the librust-*-dev crate sources are the Rust runs' offline registry).
`--check` prints a JSON row per exercise; an exercise, or a reference, that needs what this
machine lacks is `unavailable` with the reason. `--reference-samples` writes the example
solutions as `whole` responses, for `scripts/evaluate.py --benchmark polyglot --samples`.
"""

import argparse
import json
import subprocess
import sys

from hrm_codegen.evaluation.polyglot import (
    LANGUAGES,
    install_polyglot_toolchains,
    load_exercises,
    toolchain_status,
)
from hrm_codegen.evaluation.polyglot.benchmark import check_examples, reference_samples
from hrm_codegen.evaluation.polyglot.languages import AIDER_COMPAT
from hrm_codegen.evaluation.results import write_jsonl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-install", action="store_true", help="only report / check")
    parser.add_argument("--check", metavar="DATA", help="run the example solutions under DATA")
    parser.add_argument("--data", metavar="DATA", help="the exercises, for --reference-samples")
    parser.add_argument(
        "--reference-samples",
        metavar="FILE",
        help="write the example solutions of --data (or --check) DATA as whole responses",
    )
    parser.add_argument("--languages", help="comma-separated languages to check")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument(
        "--aider-compat",
        nargs="?",
        const=AIDER_COMPAT[0],
        choices=AIDER_COMPAT,
        help="--check with the tests enabled as aider's harness does (as evaluate.py's flag)",
    )
    args = parser.parse_args(argv)
    data = args.data or args.check
    if args.reference_samples and not data:
        parser.error("--reference-samples needs --data DATA (or --check DATA)")
    try:
        if not args.no_install:
            print(f"jest installed in {install_polyglot_toolchains()}")
        for language in LANGUAGES:
            available, missing = toolchain_status(language)
            print(f"{language:<11} {'ok' if available else 'unavailable: ' + missing}")
        languages = args.languages.split(",") if args.languages else None
        if args.reference_samples:
            exercises = load_exercises(data, languages=languages)
            write_jsonl(args.reference_samples, reference_samples(exercises))
            print(f"wrote {len(exercises)} reference responses to {args.reference_samples}")
        if args.check:
            exercises = load_exercises(args.check, languages=languages)
            rows = check_examples(exercises, sandbox=args.sandbox, aider_compat=args.aider_compat)
            for row in rows:
                print(json.dumps(row))
    except (ValueError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
