"""Build a named, pinned pretraining corpus as token shards with a manifest and a fingerprint.

python scripts/build_corpus.py --source stdlib --tokenizer code-bpe      # this Python's stdlib
python scripts/build_corpus.py --source installed                        # pinned pip distributions
python scripts/build_corpus.py --source debian                           # Go/Rust/Java/C++/JS, apt
python scripts/build_corpus.py --source hf_python                        # a hub dataset at a commit
python scripts/build_corpus.py --dir ~/src --output /data/corpus         # folders of your own

Sources are the files in configs/corpus/ (or a yaml path); `--set key=value` overrides one of
their settings (e.g. --set max_documents=1500). The manifest (meta.json) names the source's pin,
the counts and the fingerprint; dropped.jsonl lists every dropped file and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from hrm_codegen.data.corpus import build_corpus, build_named_corpus
from hrm_codegen.tokenization import hrm_codegen_home


def _setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(
            f"--set {text!r}: expected key=value (e.g. max_documents=1500)"
        )
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source",
        default=None,
        help="a source in configs/corpus/ (stdlib, installed, debian, hf_python) or a yaml file",
    )
    parser.add_argument(
        "--dir", action="append", help="a folder of source files instead of --source (repeatable)"
    )
    parser.add_argument("--set", action="append", type=_setting, default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--output",
        default=None,
        help="folder for the shards and meta.json (default: $HRM_CODEGEN_HOME/corpus/<source>, "
        "where data.source=<source> looks; $HRM_CODEGEN_HOME/corpus for --dir)",
    )
    parser.add_argument(
        "--tokenizer", default="code-bpe", help="'code-bpe', 'gpt2' or a tokenizer path"
    )
    parser.add_argument(
        "--benchmark-data",
        default=None,
        help="MBPP/HumanEval folder for decontamination (default: $HRM_CODEGEN_DATA_DIR, then the hub)",
    )
    parser.add_argument("--polyglot-dir", default=None, help="Polyglot benchmark folder")
    parser.add_argument("--lcb-path", default=None, help="LiveCodeBench data for decontamination")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()

    if (args.source is None) == (args.dir is None):
        parser.error("pass exactly one of --source NAME and --dir PATH")
    home = hrm_codegen_home() / "corpus"
    output = args.output or str(home / Path(args.source).stem if args.source else home)
    options = {
        "benchmark_path": args.benchmark_data,
        "polyglot_dir": args.polyglot_dir,
        "lcb_path": args.lcb_path,
        "workers": args.workers,
        "force": args.force,
    }
    if args.dir:
        if args.set:
            parser.error("--set applies to a --source config, not to --dir folders")
        build_corpus(output, tokenizer=args.tokenizer, source_dirs=args.dir, **options)
    else:
        build_named_corpus(args.source, output, args.tokenizer, dict(args.set), **options)


if __name__ == "__main__":
    main()
