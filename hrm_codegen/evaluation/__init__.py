"""Sandboxed execution of generated programs, pass@k, and benchmark evaluation (see DESIGN.md).

The benchmarks `scripts/evaluate.py` runs are the entries of `registry.BENCHMARKS`; each run
writes through one `store.RunStore` and decodes with one `sampling.SamplingSettings`.
"""

from hrm_codegen.evaluation.benchmark import Benchmark
from hrm_codegen.evaluation.cli import USER_ERRORS, run_evaluation, run_lcb_evaluation
from hrm_codegen.evaluation.failures import FAILURE_CAUSES, classify_failure
from hrm_codegen.evaluation.harness import (
    evaluate_model,
    evaluate_samples,
    load_model_and_tokenizer,
)
from hrm_codegen.evaluation.passk import mean_pass_at_k, parse_ks, pass_at_k
from hrm_codegen.evaluation.registry import BENCHMARKS
from hrm_codegen.evaluation.results import EvalSummary, read_samples
from hrm_codegen.evaluation.sampling import SamplingSettings, generate_texts
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    ExecResult,
    SandboxUnavailableError,
    SandboxWarning,
    run_program,
    run_programs,
)
from hrm_codegen.evaluation.store import OutputDirMismatchError, RunStore

__all__ = [
    "BENCHMARKS",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "USER_ERRORS",
    "FAILURE_CAUSES",
    "Benchmark",
    "EvalSummary",
    "ExecResult",
    "OutputDirMismatchError",
    "RunStore",
    "SamplingSettings",
    "SandboxUnavailableError",
    "SandboxWarning",
    "evaluate_model",
    "evaluate_samples",
    "classify_failure",
    "generate_texts",
    "load_model_and_tokenizer",
    "mean_pass_at_k",
    "parse_ks",
    "pass_at_k",
    "read_samples",
    "run_evaluation",
    "run_lcb_evaluation",
    "run_program",
    "run_programs",
]
