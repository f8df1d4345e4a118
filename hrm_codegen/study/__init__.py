"""Studies: the same question asked of several architectures at equal training compute.

`scripts/run_study.py study=<name>` reads configs/study/<name>.yaml (`spec.py`), trains and
evaluates every run of the protocol (`runner.py`) and writes results.json, report.md and plots
(`report.py`). The study package sits above `training/` and `evaluation/` and uses both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrm_codegen.study.spec import StudyConfigError, StudySpec, load_spec

__all__ = ["USER_ERRORS", "StudyConfigError", "StudySpec", "load_spec", "run_study_from_config"]


def _user_errors() -> tuple[type[BaseException], ...]:
    from hrm_codegen.training import USER_ERRORS as TRAINING_ERRORS

    return (StudyConfigError, *TRAINING_ERRORS)


USER_ERRORS = _user_errors()


def run_study_from_config(cfg: dict[str, Any], command: str = "") -> Path:
    """The launcher's work: `cfg` is configs/run_study.yaml resolved (with its `study` node)."""
    from hrm_codegen.study.report import write_report
    from hrm_codegen.study.runner import StudyRunner

    if (cfg["study"] or {}).get("kind") == "scaling":
        from hrm_codegen.study.scaling import ScalingRunner
        from hrm_codegen.study.scaling_spec import load_scaling_spec

        spec: Any = load_scaling_spec(cfg["study"])
        runner: Any = ScalingRunner(
            spec, Path(cfg.get("output_dir") or Path("studies") / spec.name)
        )
    else:
        spec = load_spec(cfg["study"])
        runner = StudyRunner(spec, Path(cfg.get("output_dir") or Path("studies") / spec.name))
    if cfg.get("prepare_only"):
        runner.prepare()
        return runner.corpus_dir
    if cfg.get("report_only"):
        # the page names the command that resumes the study and rewrites it, not this rebuild
        command = " ".join(a for a in command.split(" ") if a != "report_only=true")
        runner.prepare()
        if runner.records_root() is not None:
            runner.log(
                f"recorded {runner.write_records()} finished runs in {runner.records_root()}"
            )
        if isinstance(spec, StudySpec):
            return write_report(runner, publish_dir=cfg.get("publish_dir"), command=command)
        from hrm_codegen.study.scaling_report import write_scaling_report

        return write_scaling_report(runner, publish_dir=cfg.get("publish_dir"), command=command)
    return runner.run(publish_dir=cfg.get("publish_dir"), command=command)
