"""Sandboxed execution of generated programs, pass@k, and benchmark evaluation (see DESIGN.md)."""

from hrm_codegen.evaluation.cli import USER_ERRORS, run_evaluation, run_lcb_evaluation
from hrm_codegen.evaluation.failures import FAILURE_CAUSES, classify_failure
from hrm_codegen.evaluation.harness import (
    OutputDirMismatchError,
    evaluate_model,
    evaluate_samples,
    generate_texts,
    load_model,
)
from hrm_codegen.evaluation.passk import mean_pass_at_k, parse_ks, pass_at_k
from hrm_codegen.evaluation.results import EvalSummary, read_samples
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    ExecResult,
    SandboxUnavailableError,
    SandboxWarning,
    run_program,
    run_programs,
)

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "USER_ERRORS",
    "FAILURE_CAUSES",
    "EvalSummary",
    "ExecResult",
    "OutputDirMismatchError",
    "SandboxUnavailableError",
    "SandboxWarning",
    "evaluate_model",
    "evaluate_samples",
    "classify_failure",
    "generate_texts",
    "load_model",
    "mean_pass_at_k",
    "parse_ks",
    "pass_at_k",
    "read_samples",
    "run_evaluation",
    "run_lcb_evaluation",
    "run_program",
    "run_programs",
]
