"""Tokens per character of GPT-2 and the code BPE on MBPP/HumanEval reference code.

python scripts/bench_tokenizers.py [--code-bpe PATH] [--data-dir ../shared/data]

Per language: tokens per byte of each tokenizer on the validation documents of named corpus
sources (the text a balanced tokenizer was not trained on), one row per language:

python scripts/bench_tokenizers.py --corpus stdlib --corpus debian \
    --tokenizer six-lang=~/.cache/hrm_codegen/tokenizers/code-bpe-6lang
"""

from __future__ import annotations

import argparse

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.tokenization import load_tokenizer
from hrm_codegen.tokenization.train import compression_table, language_table


def corpus_validation_texts(names: list[str]) -> dict[str, list[str]]:
    """The validation documents of the named sources, by language."""
    from hrm_codegen.data.corpus.languages import (
        named_corpus_documents,
        validation_texts_by_language,
    )

    documents, fractions = named_corpus_documents(names)
    return validation_texts_by_language(documents, val_fraction=max(fractions.values()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpt2", default="gpt2", help="GPT-2 tokenizer name or folder")
    parser.add_argument(
        "--code-bpe", default="code-bpe", help="code BPE name, folder or tokenizer.json"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="benchmark folder (default: $HRM_CODEGEN_DATA_DIR, then the hub)",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        help="per-language table on these configs/corpus sources' validation documents",
    )
    parser.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another tokenizer for the per-language table (repeatable)",
    )
    args = parser.parse_args()

    tokenizers = {"gpt2": load_tokenizer(args.gpt2), "code-bpe": load_tokenizer(args.code_bpe)}
    if args.corpus:
        for item in args.tokenizer:
            name, _, path = item.partition("=")
            if not path:
                parser.error(f"--tokenizer {item!r}: expected NAME=PATH")
            tokenizers[name] = load_tokenizer(path)
        print(language_table(tokenizers, corpus_validation_texts(args.corpus)))
        return
    mbpp = load_benchmark("mbpp", path=args.data_dir)
    humaneval = load_benchmark("humaneval", path=args.data_dir)
    corpora = {
        "MBPP code (as shipped)": [t.reference_solution for t in mbpp],
        "MBPP code (normalised)": [format_target(t) for t in mbpp],
        "MBPP prompts": [format_prompt(t) for t in mbpp],
        "HumanEval prompt+body": [format_prompt(t) + format_target(t) for t in humaneval],
    }
    print(compression_table(tokenizers, corpora, baseline="gpt2"))


if __name__ == "__main__":
    main()
