"""Run a study: arms x learning-rate sweep x seeds at an equal training-FLOP budget, then report.

    python scripts/run_study.py study=smoke                               # seconds: the machinery
    python scripts/run_study.py study=cpu_small publish_dir=docs/results  # ~1.5 h on 2 cores
    python scripts/run_study.py study=a100 publish_dir=docs/results       # ~12 A100-hours
    python scripts/run_study.py study=cpu_small report_only=true          # rebuild the report

Studies live in configs/study/. A rerun skips finished runs and continues an interrupted one; the
output folder (default studies/<name>) holds every run, results.json, report.md and the plots.
"""

import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from hrm_codegen.study import USER_ERRORS, run_study_from_config


@hydra.main(config_path="../configs", config_name="run_study", version_base="1.3")
def main(cfg: DictConfig) -> None:
    command = "python scripts/run_study.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        run_study_from_config(OmegaConf.to_container(cfg, resolve=True), command=command)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
