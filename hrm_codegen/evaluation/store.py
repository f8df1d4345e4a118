"""One evaluation's output folder: the run store every benchmark writes through.

The folder holds `run_config.json` (the settings the run was made with), `samples.jsonl` (what
is judged), `results.jsonl` (one verdict line per judged sample or exercise, appended as each
comes, so a crash loses nothing judged; a torn last line is cut off when read back) and
`summary.json`. A rerun with the same folder judges only what has no verdict yet and refuses to
mix two runs: `RunStore.judged` reads the verdicts back, `RunStore.judge` runs the rest. The
resumable loop "judge what is pending, append, time, summarize" is written once, here, for
MBPP/HumanEval (`harness`), LiveCodeBench (`lcb.runner`) and Polyglot alike.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.evaluation.results import (
    RESULTS_FILE,
    RUN_CONFIG_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    EvalSummary,
    JsonlAppender,
    read_jsonl,
    write_jsonl,
    write_summary,
)

SAMPLE_FIELDS = ("task_id", "sample_index", "completion")

# `emit(line)` records one verdict line; a judging function calls it once per finished item.
Emit = Callable[[dict[str, Any]], None]


class OutputDirMismatchError(ValueError):
    """The output folder holds files of a different evaluation than the one asked for."""


def sample_key(line: Mapping[str, Any]) -> tuple[str, int]:
    """The key a sample and its verdict share: (task_id, sample_index)."""
    return line["task_id"], line["sample_index"]


class _NoFile:
    """What `RunStore.appender` gives when there is no folder: appends go nowhere."""

    def append(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RunStore:
    """The files of one run in `folder`; with `folder=None` nothing is read or written, so an
    evaluation without `--output` goes through the same code."""

    folder: Path | None = None

    @classmethod
    def open(cls, output_dir: str | Path | None) -> RunStore:
        """The store of `output_dir`, created if missing (None: a store that keeps nothing)."""
        if output_dir is None:
            return cls(None)
        folder = Path(output_dir)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"--output {folder} exists and is not a folder; pick a folder path"
            )
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder)

    def file(self, name: str) -> Path | None:
        return None if self.folder is None else self.folder / name

    # -- settings ----------------------------------------------------------------------------

    def check_settings(self, settings: Mapping[str, Any], what: str, *, write: bool = True) -> None:
        """Refuse to add to the folder when its run_config.json records other settings (a
        resumed run must not mix outputs of two runs), then record `settings` there (`write=
        False`: only compare, as the ranks of a sharded run other than 0 do). `what` names
        the run in the error (e.g. "an evaluation", "a Polyglot run")."""
        path = self.file(RUN_CONFIG_FILE)
        if path is None:
            return
        if path.exists():
            previous = json.loads(path.read_text())
            now = json.loads(json.dumps(dict(settings)))  # as it would read back
            changed = sorted(k for k in set(previous) | set(now) if previous.get(k) != now.get(k))
            if changed:
                raise OutputDirMismatchError(
                    f"{self.folder} holds {what} made with other settings ({', '.join(changed)}: "
                    f"{[previous.get(k) for k in changed]} there, {[now.get(k) for k in changed]} "
                    "now); use a new --output folder (or delete this one)"
                )
        if write:
            path.write_text(json.dumps(dict(settings), indent=2) + "\n")

    # -- samples -----------------------------------------------------------------------------

    def keep_samples(
        self,
        samples: Sequence[Mapping[str, Any]],
        *,
        fields: Sequence[str] = SAMPLE_FIELDS,
        differs: str = "different samples from the ones evaluated now",
    ) -> None:
        """samples.jsonl holds exactly `samples` (compared on `fields`): written if missing,
        refused (`differs` says how) if the folder's are others."""
        path = self.file(SAMPLES_FILE)
        if path is None:
            return
        if not path.exists():
            write_jsonl(path, samples)
            return
        previous = [{k: record.get(k) for k in fields} for record in read_jsonl(path)]
        if previous != [{k: sample.get(k) for k in fields} for sample in samples]:
            raise OutputDirMismatchError(
                f"{path} holds {differs}; use a new --output folder (or delete this one)"
            )

    def lines(self, name: str) -> list[dict[str, Any]]:
        """The lines of one of the run's JSONL files ([] if it has none); a line torn by a
        crash is cut off, so the next append starts clean."""
        path = self.file(name)
        if path is None or not path.exists():
            return []
        return read_jsonl(path, repair_tail=True)

    def appender(self, name: str) -> JsonlAppender | _NoFile:
        """Appends to one of the run's JSONL files, a flushed line each (nowhere without a
        folder); close it when done."""
        path = self.file(name)
        return _NoFile() if path is None else JsonlAppender(path)

    # -- results -----------------------------------------------------------------------------

    def judged(self, samples: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict]:
        """The verdicts already in results.jsonl for these samples, by `sample_key`; a verdict
        on any other sample (another run's) is refused."""
        wanted = {sample_key(s): s["completion"] for s in samples}
        judged = {}
        for record in self.lines(RESULTS_FILE):
            key = (record.get("task_id"), record.get("sample_index"))
            if wanted.get(key) != record.get("completion"):
                raise OutputDirMismatchError(
                    f"{self.file(RESULTS_FILE)} holds a result for {key[0]} sample {key[1]} that "
                    "is not one of the samples evaluated now; use a new --output folder (or "
                    "delete this one)"
                )
            judged[key] = record
        return judged

    def judge(
        self,
        run: Callable[[Emit], None],
        judged: dict[Hashable, dict[str, Any]],
        key: Callable[[Mapping[str, Any]], Hashable] = sample_key,
    ) -> float:
        """Call `run(emit)`, which judges what is pending and calls `emit(line)` with each
        verdict line as it comes; each goes into `judged` (by `key`) and is appended to
        results.jsonl at once. Returns the seconds `run` took."""
        results = self.appender(RESULTS_FILE)

        def emit(line: dict[str, Any]) -> None:
            judged[key(line)] = line
            results.append(line)

        start = time.perf_counter()
        try:
            run(emit)
        finally:
            results.close()
        return time.perf_counter() - start

    def write_summary(self, summary: EvalSummary) -> None:
        path = self.file(SUMMARY_FILE)
        if path is not None:
            write_summary(path, summary)


def default_output(benchmark: str) -> str:
    """`--output` when none is given: `eval_runs/<benchmark>-<date>-<time>`."""
    return f"eval_runs/{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"


def judging_timings(timings: Mapping[str, float], seconds: float, judged_now: int) -> dict:
    """`timings` plus `execution_s` and, when anything ran, `samples_per_s`."""
    out = dict(timings, execution_s=seconds)
    if judged_now:
        out["samples_per_s"] = judged_now / seconds
    return out


def number_samples(
    samples: Sequence[Mapping[str, Any]],
    task_ids: Sequence[str],
    *,
    what: str,
    canonical_id: Callable[[Any], str] = str,
    unknown_hint: str,
    missing_hint: str,
) -> list[dict[str, Any]]:
    """`{task_id, sample_index, completion}` per sample: ids made canonical by `canonical_id`,
    `sample_index` in order of appearance. One check for every benchmark (MBPP/HumanEval, LCB):
    samples of tasks outside `task_ids` and tasks without samples are errors, named as `what`
    (e.g. "mbpp tasks evaluated") with the hint on how to fix them."""
    known = set(task_ids)
    numbered, seen, unknown = [], Counter(), []
    for position, sample in enumerate(samples):
        if not isinstance(sample, Mapping) or "task_id" not in sample:
            raise ValueError(f"sample {position} must be a dict with task_id and completion")
        completion = sample.get("completion")
        if not isinstance(completion, str):
            raise ValueError(
                f"sample {position} ({sample['task_id']}) has completion of type "
                f"{type(completion).__name__}; it must be a string"
            )
        try:
            task_id = canonical_id(sample["task_id"])
        except TypeError as error:  # e.g. a float or null id in a samples file
            raise ValueError(f"sample {position}: {error}") from None
        if task_id not in known:
            unknown.append(str(sample["task_id"]))
            continue
        numbered.append(
            {"task_id": task_id, "sample_index": seen[task_id], "completion": completion}
        )
        seen[task_id] += 1
    if unknown:
        raise ValueError(
            f"{len(unknown)} sample(s) name tasks that are not among the {len(known)} {what}, "
            f"e.g. {sorted(set(unknown))[:5]}; {unknown_hint}"
        )
    missing = [task_id for task_id in task_ids if not seen[task_id]]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(known)} {what} have no samples, e.g. {missing[:5]}; "
            f"{missing_hint}"
        )
    return numbered


def complete_lines(
    path: Path | None,
    num_samples: int,
    *,
    key: str = "task_id",
    known: Mapping[str, Any] | None = None,
    repair: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """The prompts of a generation file (samples.jsonl, generations.jsonl) with all
    `num_samples` of their lines, grouped by `key` and sorted by sample index (`known`: only
    these keys). `repair` rewrites the file without a prompt a crash cut short, so that
    appending redoes it."""
    if path is None or not path.exists():
        return {}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in read_jsonl(path, repair_tail=True):
        grouped[str(line.get(key))].append(line)
    complete = {
        name: sorted(lines, key=lambda line: line["sample_index"])
        for name, lines in grouped.items()
        if len(lines) == num_samples
    }
    if repair and len(complete) != len(grouped):
        write_jsonl(path, [line for lines in complete.values() for line in lines])
    return {k: v for k, v in complete.items() if known is None or k in known}


__all__ = [
    "SAMPLE_FIELDS",
    "OutputDirMismatchError",
    "RunStore",
    "complete_lines",
    "default_output",
    "judging_timings",
    "number_samples",
    "sample_key",
]
