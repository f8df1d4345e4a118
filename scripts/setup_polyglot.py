"""Set up the Polyglot benchmark's test runners, then check them on exercises.

    python scripts/setup_polyglot.py                      # install jest + babel once (npm)
    python scripts/setup_polyglot.py --check tests/fixtures/polyglot   # run example solutions

jest goes to $HRM_CODEGEN_POLYGLOT_CACHE/jest (default ~/.cache/hrm_codegen/polyglot/jest), the
folder the test runner reads, and is used offline from there. The other toolchains come from
system packages (install what is missing; on a system whose nodejs bundles npm, leave npm out):
`apt-get install g++ cmake nodejs npm cargo golang-go default-jdk-headless junit5 libassertj-core-java`.
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
from hrm_codegen.evaluation.polyglot.benchmark import check_examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-install", action="store_true", help="only report / check")
    parser.add_argument("--check", metavar="DATA", help="run the example solutions under DATA")
    parser.add_argument("--languages", help="comma-separated languages to check")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    args = parser.parse_args(argv)
    try:
        if not args.no_install:
            print(f"jest installed in {install_polyglot_toolchains()}")
        for language in LANGUAGES:
            available, missing = toolchain_status(language)
            print(f"{language:<11} {'ok' if available else 'unavailable: ' + missing}")
        if args.check:
            languages = args.languages.split(",") if args.languages else None
            exercises = load_exercises(args.check, languages=languages)
            for row in check_examples(exercises, sandbox=args.sandbox):
                print(json.dumps(row))
    except (ValueError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
