"""Build the decontaminated pretraining corpus as token shards (+ meta.json).

python scripts/build_corpus.py --output /data/corpus                  # stdlib + site-packages
python scripts/build_corpus.py --output /data/corpus --source ~/src --tokenizer gpt2
python scripts/build_corpus.py --output /data/corpus --hf-dataset codeparrot/codeparrot-clean --max-documents 100000
"""

from __future__ import annotations

import argparse

from hrm_codegen.data.corpus import build_corpus
from hrm_codegen.data.corpus_filters import FilterConfig
from hrm_codegen.tokenization import hrm_codegen_home


def main() -> None:
    defaults = FilterConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output",
        default=str(hrm_codegen_home() / "corpus"),
        help="folder for the shards and meta.json (default: $HRM_CODEGEN_HOME/corpus, where training looks)",
    )
    parser.add_argument(
        "--tokenizer", default="code-bpe", help="'code-bpe', 'gpt2' or a tokenizer path"
    )
    parser.add_argument(
        "--source",
        action="append",
        help="folder of .py files (repeatable; default: stdlib + site-packages)",
    )
    parser.add_argument(
        "--hf-dataset", default=None, help="stream this Hugging Face dataset instead of folders"
    )
    parser.add_argument("--text-column", default="content", help="text column of --hf-dataset")
    parser.add_argument("--hf-split", default="train")
    parser.add_argument(
        "--max-documents", type=int, default=None, help="stop after this many files"
    )
    parser.add_argument("--val-fraction", type=float, default=0.01)
    parser.add_argument(
        "--benchmark-data",
        default=None,
        help="MBPP/HumanEval folder for decontamination (default: $HRM_CODEGEN_DATA_DIR, then the hub)",
    )
    parser.add_argument(
        "--no-decontaminate",
        action="store_true",
        help="skip decontamination (recorded in meta.json)",
    )
    parser.add_argument("--ngram", type=int, default=10, help="decontamination n-gram length")
    parser.add_argument("--min-bytes", type=int, default=defaults.min_bytes)
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes)
    parser.add_argument("--max-line-length", type=int, default=defaults.max_line_length)
    parser.add_argument("--max-mean-line-length", type=float, default=defaults.max_mean_line_length)
    parser.add_argument("--min-alnum-fraction", type=float, default=defaults.min_alnum_fraction)
    parser.add_argument("--shard-tokens", type=int, default=50_000_000)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()

    filters = FilterConfig(
        min_bytes=args.min_bytes,
        max_bytes=args.max_bytes,
        max_line_length=args.max_line_length,
        max_mean_line_length=args.max_mean_line_length,
        min_alnum_fraction=args.min_alnum_fraction,
    )
    build_corpus(
        args.output,
        tokenizer=args.tokenizer,
        source_dirs=args.source,
        hf_dataset=args.hf_dataset,
        hf_text_column=args.text_column,
        hf_split=args.hf_split,
        max_documents=args.max_documents,
        val_fraction=args.val_fraction,
        filters=filters,
        decontaminate=not args.no_decontaminate,
        benchmark_path=args.benchmark_data,
        ngram=args.ngram,
        shard_tokens=args.shard_tokens,
        workers=args.workers,
        force=args.force,
    )


if __name__ == "__main__":
    main()
