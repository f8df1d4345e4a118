"""LiveCodeBench's four scenarios on our harness and sandbox (see DESIGN.md, Evaluation).

`runner.evaluate_lcb_codegen` (code generation and self-repair), `runner.evaluate_lcb_predictions`
(test output prediction, code execution), `compare` (stdout comparison modes), `programs`
(problems as sandbox work, results as verdicts), `grading` (ast grading of predicted values),
`selfrepair` (repair prompts from a previous run), `bench` (stdin throughput), `cli` (what the
benchmark registry's LCB entries load, prompt and judge with, and the self-repair run).
"""

from hrm_codegen.evaluation.lcb.compare import (
    COMPARE_MODES,
    comparator,
    lcb_outputs_equal,
    tolerant_outputs_equal,
)
from hrm_codegen.evaluation.lcb.runner import (
    LCBRunSettings,
    evaluate_lcb_codegen,
    evaluate_lcb_predictions,
)

__all__ = [
    "COMPARE_MODES",
    "LCBRunSettings",
    "comparator",
    "evaluate_lcb_codegen",
    "evaluate_lcb_predictions",
    "lcb_outputs_equal",
    "tolerant_outputs_equal",
]
