"""Train the code BPE on the interpreter's standard library (filtered, decontaminated).

python scripts/train_tokenizer.py                      # -> $HRM_CODEGEN_HOME/tokenizers/code-bpe
python scripts/train_tokenizer.py --output /tmp/bpe --vocab-size 16384 --source ~/src/project
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hrm_codegen.data.corpus import clean_python_texts, python_files, stdlib_python_files
from hrm_codegen.tokenization.load import default_code_bpe_dir
from hrm_codegen.tokenization.train import DEFAULT_VOCAB_SIZE, train_code_bpe


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, default=default_code_bpe_dir(), help="folder for tokenizer.json"
    )
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        help="folder of .py files (repeatable; default: the stdlib)",
    )
    parser.add_argument(
        "--benchmark-data",
        default=None,
        help="folder with the MBPP/HumanEval files for decontamination (default: $HRM_CODEGEN_DATA_DIR, then the hub)",
    )
    parser.add_argument(
        "--no-decontaminate",
        action="store_true",
        help="skip benchmark decontamination (not recommended)",
    )
    parser.add_argument(
        "--no-vary-layouts",
        action="store_true",
        help="do not show some files with CRLF/tab layouts",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    files = python_files(args.source) if args.source else stdlib_python_files()
    texts, dropped = clean_python_texts(files, not args.no_decontaminate, args.benchmark_data)
    print(f"{len(files)} files, {len(texts)} kept, dropped: {dict(sorted(dropped.items()))}")
    output = train_code_bpe(
        texts, args.vocab_size, args.output, vary_layouts=not args.no_vary_layouts, seed=args.seed
    )
    print(f"saved {output / 'tokenizer.json'}")


if __name__ == "__main__":
    main()
