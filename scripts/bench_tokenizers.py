"""Tokens per character of GPT-2 and the code BPE on MBPP/HumanEval reference code.

python scripts/bench_tokenizers.py [--code-bpe PATH] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.tokenization import load_tokenizer
from hrm_codegen.tokenization.train import compression_table


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
    args = parser.parse_args()

    tokenizers = {"gpt2": load_tokenizer(args.gpt2), "code-bpe": load_tokenizer(args.code_bpe)}
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
