"""Train the code BPE on the interpreter's standard library (filtered, decontaminated).

python scripts/train_tokenizer.py                      # -> $HRM_CODEGEN_HOME/tokenizers/code-bpe
python scripts/train_tokenizer.py --output /tmp/bpe --vocab-size 16384 --source ~/src/project

Six languages: a language-balanced sample of named corpus sources (configs/corpus/), each
language the same bytes (default: as many as the smallest language has), validation documents
left out; training.json records the documents and bytes taken per language.

python scripts/train_tokenizer.py --corpus stdlib --corpus debian --balance language \
    --output ~/.cache/hrm_codegen/tokenizers/code-bpe-6lang
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
    parser.add_argument(
        "--corpus",
        action="append",
        help="a configs/corpus source to sample from instead of --source (repeatable)",
    )
    parser.add_argument(
        "--balance",
        choices=["language"],
        default=None,
        help="with --corpus: the same bytes of every language (the default with --corpus)",
    )
    parser.add_argument(
        "--bytes-per-language",
        type=float,
        default=None,
        help="with --corpus: bytes sampled per language (default: the smallest language's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.corpus:
        if args.source:
            parser.error("pass --corpus NAME or --source FOLDER, not both")
        texts, manifest = balanced_corpus_texts(args)
        output = train_code_bpe(
            texts,
            args.vocab_size,
            args.output,
            vary_layouts=not args.no_vary_layouts,
            seed=args.seed,
            manifest=manifest,
        )
        print(f"saved {output / 'tokenizer.json'}")
        return
    if args.balance or args.bytes_per_language:
        parser.error("--balance and --bytes-per-language go with --corpus")
    files = python_files(args.source) if args.source else stdlib_python_files()
    texts, dropped = clean_python_texts(files, not args.no_decontaminate, args.benchmark_data)
    print(f"{len(files)} files, {len(texts)} kept, dropped: {dict(sorted(dropped.items()))}")
    output = train_code_bpe(
        texts, args.vocab_size, args.output, vary_layouts=not args.no_vary_layouts, seed=args.seed
    )
    print(f"saved {output / 'tokenizer.json'}")


def balanced_corpus_texts(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The language-balanced sample of the `--corpus` sources and what training.json records."""
    from hrm_codegen.data.corpus.languages import (
        balanced_sample,
        named_corpus_documents,
        texts_by_language,
    )
    from hrm_codegen.data.corpus_filters import Decontaminator
    from hrm_codegen.data.decontamination import benchmark_texts_by_name

    decontaminator = None
    if not args.no_decontaminate:
        names = ["mbpp", "mbpp_sanitized", "humaneval", "polyglot"]
        decontaminator = Decontaminator(
            benchmark_texts_by_name(names, data_path=args.benchmark_data)
        )
    documents, fractions = named_corpus_documents(args.corpus)
    # every source's validation documents are held out (the largest fraction of the sources)
    by_language = texts_by_language(
        documents, val_fraction=max(fractions.values()), decontaminator=decontaminator
    )
    budget = None if args.bytes_per_language is None else int(args.bytes_per_language)
    texts, counts = balanced_sample(by_language, budget, seed=args.seed)
    for language, count in counts.items():
        print(
            f"{language:<12} {count['documents']:>6} docs {count['bytes']:>12,} bytes "
            f"(of {count['available_bytes']:,})"
        )
    manifest = {
        "corpora": list(args.corpus),
        "balance": "language",
        "bytes_per_language": budget,
        "decontaminated": not args.no_decontaminate,
        "languages": counts,
    }
    return texts, manifest


if __name__ == "__main__":
    main()
