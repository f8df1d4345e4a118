"""Pass@k of a model, or of a file of completions, on MBPP, HumanEval, LiveCodeBench, Polyglot,
the exec benchmark and toy tasks (`--help` lists them: the benchmark registry).

    python scripts/evaluate.py --model-type hrm --ckpt runs/quickstart --benchmark mbpp --limit 20 --k 1
    python scripts/evaluate.py --model-type hf --ckpt ~/models/tiny-gpt2 --benchmark humaneval \\
        --num-samples 10 --temperature 0.8 --top-p 0.95 --k 1,10
    python scripts/evaluate.py --samples samples.jsonl --benchmark humaneval --output eval/he
    python scripts/evaluate.py --model-type hrm --ckpt runs/a100 --benchmark lcb_codegeneration \\
        --data lcb/code_generation.jsonl --start-date 2024-09-01 --num-samples 5 --k 1,5 \\
        --temperature 0.2 --output eval/lcb
    python scripts/evaluate.py --model-type hrm --ckpt runs/a100 --benchmark lcb_selfrepair \\
        --data lcb/code_generation.jsonl --previous eval/lcb --output eval/lcb-repair
    python scripts/evaluate.py --samples answers.jsonl --benchmark lcb_execution --data lcb/exec.jsonl
    python scripts/evaluate.py --model-type hrm --ckpt runs/a100 --metric bpb --data corpus

Writes OUTPUT/samples.jsonl, results.jsonl (one line per sample, appended as they are judged)
and summary.json, and prints a table. Rerunning with the same --output resumes. Programs run
sandboxed (bubblewrap; see hrm_codegen/evaluation/sandbox/). The work is in
hrm_codegen/evaluation/cli.py (flags) and the registry's entries (registry.py).
"""

import sys

from hrm_codegen.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
