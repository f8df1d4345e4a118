"""Run records: what a finished study run leaves that the study needs without its weights.

A study may span sessions on fresh machines, and its weights (hundreds of MB) cannot travel with
the repository; its records can. A record is the run's `config.yaml`, `metrics.jsonl`, final
`trainer_state.json`, the model's facts (`facts.json`: parameters and FLOPs per token, with and
without embedding and head) and the study's cached evaluations (`study_eval.json`), in
`<records_dir>/runs/<run path>/`. A recorded run counts as done: selection, tables and plots read
the record. A later stage that needs the weights (fine-tuning from a pretrained run, an
evaluation not cached yet) trains the run again and records whether it logged the same floats
(`reproduced.json`): on the same kind of machine it does, bit for bit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hrm_codegen.run_layout import CHECKPOINT_DIR, CONFIG_SNAPSHOT, METRICS_FILE, TRAINER_STATE

FACTS_FILE = "facts.json"
REPRODUCED_FILE = "reproduced.json"
COPIED = (CONFIG_SNAPSHOT, METRICS_FILE, "DIVERGED", "study_eval.json", REPRODUCED_FILE)


def is_recorded(record: Path | None) -> bool:
    return record is not None and (record / METRICS_FILE).is_file()


def record_status(record: Path | None) -> str:
    """done / diverged for a record, "new" when there is none."""
    if not is_recorded(record):
        return "new"
    assert record is not None
    return "diverged" if (record / "DIVERGED").is_file() else "done"


def write_record(
    run_dir: Path, record: Path, facts: Callable[[Path], dict[str, Any]] | None = None
) -> None:
    """Copy a finished run's record files to `record` (facts computed from its checkpoint)."""
    record.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, record / name)
    state = run_dir / CHECKPOINT_DIR / TRAINER_STATE
    if state.is_file():
        shutil.copy(state, record / TRAINER_STATE)
        if facts is not None and not (record / FACTS_FILE).is_file():
            (record / FACTS_FILE).write_text(json.dumps(facts(run_dir), indent=2) + "\n")


def trainer_state(folder: Path) -> dict[str, Any]:
    """The final trainer state of a run folder (its checkpoint) or a record."""
    for path in (folder / CHECKPOINT_DIR / TRAINER_STATE, folder / TRAINER_STATE):
        if path.is_file():
            return json.loads(path.read_text())
    return {}


def run_facts(folder: Path, compute: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """A run's model facts: from its record, else computed from its checkpoint."""
    if (folder / FACTS_FILE).is_file():
        return json.loads((folder / FACTS_FILE).read_text())
    if (folder / CHECKPOINT_DIR).exists():
        return compute(folder)
    return {}
