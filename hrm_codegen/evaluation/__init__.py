"""Sandboxed execution of generated programs, pass@k, and benchmark evaluation (see DESIGN.md)."""

from hrm_codegen.evaluation.harness import (
    OutputDirMismatchError,
    evaluate_model,
    evaluate_samples,
    load_model,
    run_evaluation,
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

# Errors caused by the user's input (bad flags, files, checkpoints), shown without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, SandboxUnavailableError)

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "USER_ERRORS",
    "EvalSummary",
    "ExecResult",
    "OutputDirMismatchError",
    "SandboxUnavailableError",
    "SandboxWarning",
    "evaluate_model",
    "evaluate_samples",
    "load_model",
    "mean_pass_at_k",
    "parse_ks",
    "pass_at_k",
    "read_samples",
    "run_evaluation",
    "run_program",
    "run_programs",
]
