"""Polyglot end to end: responses (a samples file or a model) -> two tries -> rates.

Per exercise: try 1 sends the instructions and the stub files; the response's edits are
applied to a fresh copy whose tests are the original ones, and the tests run sandboxed. If
they fail, try 2 sends the trimmed test output and the files as try 1 left them; its edits
apply on top. With `output_dir`, results.jsonl gets one line per exercise as it finishes,
summary.json is rewritten at the end, and a rerun skips finished exercises (a model's
responses already in samples.jsonl are reused, not regenerated).
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hrm_codegen.evaluation.polyglot.edits import (
    EDIT_FORMATS,
    MalformedResponseError,
    apply_response,
)
from hrm_codegen.evaluation.polyglot.exercises import (
    Exercise,
    example_solution,
    exercise_files,
    load_exercises,
)
from hrm_codegen.evaluation.polyglot.fitting import FITS, FittedPrompt, PromptFitter
from hrm_codegen.evaluation.polyglot.languages import (
    AIDER_COMPAT,
    check_aider_compat,
    enable_all_tests,
    exercise_toolchain_status,
    reference_status,
    test_command,
)
from hrm_codegen.evaluation.polyglot.prompts import first_prompt, format_files, second_prompt
from hrm_codegen.evaluation.polyglot.runner import (
    DEFAULT_TEST_TIMEOUT_S,
    SANDBOXES,
    Workspace,
    resolve_sandbox,
    trim_output,
)
from hrm_codegen.evaluation.results import (
    RESULTS_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    EvalSummary,
    format_table,
    read_jsonl,
)
from hrm_codegen.evaluation.sampling import SamplingSettings, sample_texts
from hrm_codegen.evaluation.source import check_source, load_model_from_args
from hrm_codegen.evaluation.store import OutputDirMismatchError, RunStore, default_output

BENCHMARK = "polyglot"
MODEL_SAMPLING = SamplingSettings(max_new_tokens=1024)  # a response may hold whole files
TRY_STATUSES = ("passed", "failed", "timeout", "malformed", "error", "context_exceeded")

# A function that answers a prompt: (exercise, try number, prompt) -> response, or None when
# there is no response for that try (a samples file without a try-2 line).
Responder = Callable[[Exercise, int, str], "str | None"]


class ContextExhaustedError(Exception):
    """The prompt does not fit in the model's context: that try fails, the run goes on."""


@dataclass
class TryResult:
    """One try of one exercise, as results.jsonl stores it (`to_dict`)."""

    number: int
    status: str  # one of TRY_STATUSES
    response: str
    reason: str = ""  # why a response was malformed, or why the runner failed
    output: str = ""  # trimmed test output
    duration: float = 0.0
    ignored_files: list[str] = field(default_factory=list)

    @property
    def well_formed(self) -> bool:
        return self.status != "malformed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "try": self.number,
            "status": self.status,
            "passed": self.status == "passed",
            "well_formed": self.well_formed,
            "reason": self.reason,
            "ignored_files": self.ignored_files,
            "duration": round(self.duration, 3),
            "output": self.output,
            "response": self.response,
        }


@dataclass
class PolyglotSummary(EvalSummary):
    """EvalSummary plus the Polyglot breakdown.

    `pass_at_k` holds the overall `pass_rate_1`, `pass_rate_2` and `percent_well_formed`
    (fractions of the exercises whose toolchain is present, like pass@k); `per_language` the
    same per language with its counts; `errors` the malformed responses (by reason kind),
    timeouts and runner errors; `unavailable` what was skipped and why: a language whose
    exercises all went for one reason (its toolchain is missing), else each exercise by task id
    (a crate, a jar this machine lacks).
    """

    per_language: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# One test run, one try, one exercise


def _make_writable(folder: Path) -> None:
    """Give the owner write access throughout a copy: a read-only benchmark folder (a shared
    mount) copies read-only, and inside the sandbox, without root's override, cargo could not
    write Cargo.lock nor a response replace a file."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o700 if path.is_dir() else 0o600))


def run_tests(
    exercise: Exercise,
    files: Mapping[str, str],
    *,
    sandbox: str = "bwrap",
    timeout: float = DEFAULT_TEST_TIMEOUT_S,
    aider_compat: str | None = None,
) -> tuple[str, str, float]:
    """(status, trimmed output, seconds) of the exercise's tests against solution `files`.

    The copy is made from the exercise folder itself, so the test files are always the
    original ones, whatever a response did; `.meta` is left out (the example solution; the
    Exercism C++ CMakeLists would build `.meta/example.cpp` instead of the response if present).
    `sandbox` is `bwrap` or `none-unsafe` (see `runner.resolve_sandbox`); `aider_compat`
    enables the tests as aider does (`languages.AIDER_COMPAT`).
    """
    with Workspace(sandbox, exercise.name) as workspace:
        shutil.copytree(
            exercise.path,
            workspace.exercise,
            ignore=lambda folder, names: [".meta"] if Path(folder) == exercise.path else [],
            symlinks=False,
        )
        _make_writable(workspace.exercise)
        for name, text in files.items():
            target = workspace.exercise / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        enable_all_tests(exercise, workspace.exercise, aider_compat)
        command = test_command(exercise, workspace, aider_compat)
        result = workspace.run(command.script, command.env, timeout=timeout)
        output = trim_output(result.output, workspace.stand_ins())
    if result.timed_out:
        status = "timeout"
    elif result.exit_code is None:
        status = "error"
    else:
        status = "passed" if result.exit_code == 0 else "failed"
    return status, output, result.duration


def fixed_files(exercise: Exercise) -> list[str]:
    """The exercise's files a response cannot change (edits dropped): all but the solution and
    test files, .meta and .docs aside (a response naming those is dropped as a hidden path)."""
    own = {*exercise.solution_files, *exercise.test_files}
    return [f for f in exercise_files(exercise) if f not in own and not f.startswith(".")]


def attempt(
    exercise: Exercise,
    number: int,
    response: str,
    edit_format: str,
    files: Mapping[str, str],
    *,
    sandbox: str,
    timeout: float,
    aider_compat: str | None = None,
) -> tuple[TryResult, dict[str, str]]:
    """Apply `response` to `files` and run the tests; (the try, the files it left)."""
    try:
        applied = apply_response(
            response, edit_format, files, exercise.test_files, fixed_files(exercise)
        )
    except MalformedResponseError as error:
        return TryResult(number, "malformed", response, reason=error.reason), dict(files)
    status, output, seconds = run_tests(
        exercise, applied.files, sandbox=sandbox, timeout=timeout, aider_compat=aider_compat
    )
    reason = output.splitlines()[-1] if status == "error" and output else ""
    result = TryResult(
        number,
        status,
        response,
        reason=reason,
        output=output,
        duration=seconds,
        ignored_files=applied.ignored_files,
    )
    return result, applied.files


def solve_exercise(
    exercise: Exercise,
    respond: Responder,
    *,
    edit_format: str,
    sandbox: str,
    timeout: float = DEFAULT_TEST_TIMEOUT_S,
    aider_compat: str | None = None,
    fitter: PromptFitter | None = None,
) -> dict[str, Any]:
    """Both tries of one exercise (try 2 only after a failed try 1): its results.jsonl line.

    With `fitter` (a model's context), each prompt is fitted to it (`fitting`): how, per try,
    goes in the line's `prompt_fit`, and a try whose prompt cannot fit is `context_exceeded`
    without asking the model."""
    line: dict[str, Any] = {
        "task_id": exercise.task_id,
        "language": exercise.language,
        "exercise": exercise.name,
        "edit_format": edit_format,
    }
    available, missing = exercise_toolchain_status(exercise)
    if not available:
        return {**line, "status": "unavailable", "reason": missing, "tries": []}
    files = {name: exercise.read(name) for name in exercise.solution_files}
    tries: list[TryResult] = []
    fits: dict[str, str] = {}

    def fitted(number: int, prompt: FittedPrompt) -> str | None:
        """The fitted prompt's text, its fit recorded; a skipped one fails try `number`."""
        fits[f"try_{number}"] = prompt.fit
        if prompt.text is None:
            assert fitter is not None
            reason = (
                f"prompt_too_long: the try-{number} prompt takes at least {prompt.tokens} tokens "
                f"with nothing cut; the model's context leaves {fitter.max_prompt_tokens}"
            )
            tries.append(TryResult(number, "context_exceeded", "", reason=reason))
        return prompt.text

    def run_try(number: int, prompt: str | None, files: dict[str, str]) -> tuple[str | None, dict]:
        """Try `number`: (its response, None when there is none; the files after it), its
        result appended to `tries` (a prompt that does not fit fails the try)."""
        if prompt is None:
            return None, files
        try:
            response = respond(exercise, number, prompt)
        except ContextExhaustedError as error:
            tries.append(TryResult(number, "context_exceeded", "", reason=str(error)))
            return None, files
        if response is None:
            return None, files
        result, files = attempt(
            exercise,
            number,
            response,
            edit_format,
            files,
            sandbox=sandbox,
            timeout=timeout,
            aider_compat=aider_compat,
        )
        tries.append(result)
        return response, files

    if fitter is None:
        prompt = first_prompt(exercise, edit_format, files)
    else:
        prompt = fitted(1, fitter.first(exercise, edit_format, files))
    response, files = run_try(1, prompt, files)
    if response is not None and tries[-1].status != "passed":
        first = tries[-1]
        feedback = first.output if first.status != "malformed" else first.reason
        history = {"first": prompt, "first_response": response}
        if fitter is None:
            second = second_prompt(exercise, edit_format, files, feedback, **history)
        else:
            second = fitted(2, fitter.second(exercise, edit_format, files, feedback, **history))
        run_try(2, second, files)
    passed_1 = bool(tries) and tries[0].status == "passed"
    passed_2 = any(t.status == "passed" for t in tries)
    return {
        **line,
        "status": "passed" if passed_2 else "failed",
        "passed_1": passed_1,
        "passed_2": passed_2,
        "well_formed": all(t.well_formed for t in tries),
        **({"prompt_fit": fits} if fitter is not None else {}),
        "tries": [t.to_dict() for t in tries],
    }


# --------------------------------------------------------------------------------------------------
# Metrics


def _rates(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ran = [line for line in lines if line["status"] != "unavailable"]
    total = len(ran)

    def share(key: str) -> float:
        return sum(bool(line[key]) for line in ran) / total if total else 0.0

    return {
        "pass_rate_1": share("passed_1"),
        "pass_rate_2": share("passed_2"),
        "percent_well_formed": share("well_formed"),
        "exercises": total,
        "unavailable": len(lines) - total,
    }


def fit_counts(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How the prompts of model-run lines were fitted to the context: per try, the number of
    exercises whose prompt went whole, with its history dropped (try 2), truncated, or was
    skipped as too long (`fitting.FITS`; exercises without that try are not counted); then the
    exercises `answered` (try 1 sent) and the share of those whose responses were all
    well-formed (`percent_well_formed` counts a skipped exercise, which has no response, as
    well-formed, as aider counts an exhausted context window apart from malformed responses)."""
    counts: dict[str, Any] = {
        "try_1": dict.fromkeys((f for f in FITS if f != "history_dropped"), 0),
        "try_2": dict.fromkeys(FITS, 0),
    }
    answered = []
    for line in lines:
        fits = line.get("prompt_fit", {})
        for number, fit in fits.items():
            counts[number][fit] += 1
        if fits and fits.get("try_1") != "prompt_too_long":
            answered.append(line)
    counts["answered"] = len(answered)
    counts["percent_well_formed_answered"] = (
        sum(bool(line["well_formed"]) for line in answered) / len(answered) if answered else 0.0
    )
    return counts


def _error_kind(reason: str) -> str:
    if "not found" in reason:
        return "search_not_found"
    if "not one of the solution files" in reason:
        return "file_outside_solution"
    return "unparsable"


def summarize(
    lines: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], timings: Mapping[str, float]
) -> PolyglotSummary:
    """The summary of finished exercises' results lines."""
    by_language: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for line in lines:
        by_language[line["language"]].append(line)
    overall = _rates(lines)
    errors: Counter[str] = Counter(
        {
            "malformed_responses": 0,
            "test_timeouts": 0,
            "runner_errors": 0,
            "exhausted_context_windows": 0,
            "missing_try_2": 0,
        }
    )
    for line in lines:
        tries = line.get("tries", [])
        for entry in tries:
            if entry["status"] == "malformed":
                errors["malformed_responses"] += 1
                errors[f"malformed_{_error_kind(entry['reason'])}"] += 1
            errors["test_timeouts"] += entry["status"] == "timeout"
            errors["runner_errors"] += entry["status"] == "error"
            errors["exhausted_context_windows"] += entry["status"] == "context_exceeded"
            errors["ignored_test_edits"] += bool(entry.get("ignored_files"))
        if len(tries) == 1 and not tries[0]["passed"]:
            errors["missing_try_2"] += 1
    counts = Counter(
        {"passed_1": 0, "passed_2": 0, "failed": 0, "unavailable": 0}  # passed_2: on try 2 only
    )
    for line in lines:
        if line["status"] == "unavailable":
            counts["unavailable"] += 1
        elif line["passed_1"]:
            counts["passed_1"] += 1
        elif line["passed_2"]:
            counts["passed_2"] += 1
        else:
            counts["failed"] += 1
    per_language = {language: _rates(group) for language, group in sorted(by_language.items())}
    breakdown: dict[str, Any] = {}
    if any("prompt_fit" in line for line in lines):  # a model's run: prompts fitted to it
        breakdown["prompt_fit"] = fit_counts(lines)
        for language, group in by_language.items():
            per_language[language]["prompt_fit"] = fit_counts(group)
    return PolyglotSummary(
        benchmark=BENCHMARK,
        num_tasks=len(lines),
        n=1,
        pass_at_k={k: overall[k] for k in ("pass_rate_1", "pass_rate_2", "percent_well_formed")},
        counts=dict(counts),
        per_task={
            line["task_id"]: (len(line.get("tries", [])), int(bool(line.get("passed_2"))))
            for line in lines
        },
        timings=dict(timings),
        settings=dict(settings),
        breakdown=breakdown,
        per_language=per_language,
        errors=dict(errors),
        unavailable=_unavailable(by_language),
    )


def _unavailable(by_language: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    """{language: reason} when all its exercises went for one reason, else {task_id: reason}."""
    found: dict[str, str] = {}
    for language, group in sorted(by_language.items()):
        skipped = [line for line in group if line["status"] == "unavailable"]
        reasons = {line["reason"] for line in skipped}
        if skipped and len(skipped) == len(group) and len(reasons) == 1:
            found[language] = reasons.pop()
        else:
            found.update((line["task_id"], line["reason"]) for line in skipped)
    return found


# --------------------------------------------------------------------------------------------------
# Responses: a samples file, or a model


def read_responses(path: str | Path) -> dict[tuple[str, int], str]:
    """{(task_id, try): response} from a JSONL file of `{"task_id", "try", "response"}`.

    `try` defaults to 1; a task id is `<language>/<exercise>`; a (task, try) given twice is
    an error rather than a silent choice.
    """
    responses: dict[tuple[str, int], str] = {}
    for number, record in enumerate(read_jsonl(path), start=1):
        task_id, attempt_number = record.get("task_id"), record.get("try", 1)
        response = record.get("response")
        if not isinstance(task_id, str) or "/" not in task_id:
            raise ValueError(f"{path}:{number}: task_id must be '<language>/<exercise>'")
        if attempt_number not in (1, 2):
            raise ValueError(f"{path}:{number}: try must be 1 or 2, got {attempt_number!r}")
        if not isinstance(response, str):
            raise ValueError(
                f"{path}:{number}: 'response' must be a string (keys {sorted(record)})"
            )
        if (task_id, attempt_number) in responses:
            raise ValueError(
                f"{path}:{number}: a second response for {task_id} try {attempt_number}"
            )
        responses[(task_id, attempt_number)] = response
    if not responses:
        raise ValueError(f"samples file {path} holds no responses")
    return responses


def model_responder(
    model: Any,
    tokenizer: Any,
    sampling: SamplingSettings = MODEL_SAMPLING,
) -> Responder:
    """Answers from a causal LM, through the same generation as the pass@k harness
    (`sampling.sample_texts`: `generation.generate` for our models, `generate_hf` for a
    transformers model), one prompt at a time (`sampling.batch_size` is not used). A prompt
    that does not fit the model's `max_seq_len` raises ContextExhaustedError (that try fails);
    new tokens are capped at what the context leaves after the prompt."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_seq_len", None) or getattr(config, "max_position_embeddings", None)
    sampling = replace(sampling, batch_size=1)

    def respond(exercise: Exercise, number: int, prompt: str) -> str:
        settings = sampling
        if limit is not None:
            tokens = len(tokenizer(prompt)["input_ids"])
            room = limit - tokens - 1  # + BOS
            if room <= 0:
                raise ContextExhaustedError(
                    f"the try-{number} prompt has {tokens} tokens; the model's max_seq_len is {limit}"
                )
            # what generation would cap it to anyway, without a warning on every try
            settings = replace(sampling, max_new_tokens=min(sampling.max_new_tokens, room))
        texts = sample_texts(
            model,
            tokenizer,
            [prompt],
            stop=["\n# Test results", "\n# Instructions"],
            sampling=settings,
        )
        return texts[0][0]

    return respond


# --------------------------------------------------------------------------------------------------
# The run


def _resume(
    store: RunStore, settings: Mapping[str, Any], responses: Mapping[tuple[str, int], str] | None
) -> tuple[dict[str, dict], dict[tuple[str, int], str]]:
    """(finished results by task, responses generated before) from an earlier run in `store`."""
    store.check_settings(settings, "a Polyglot run")
    generated: dict[tuple[str, int], str] = {}
    if responses is not None:
        given = [{"task_id": t, "try": n, "response": r} for (t, n), r in sorted(responses.items())]
        store.keep_samples(
            given,
            fields=("task_id", "try", "response"),
            differs="other responses than the samples file",
        )
    else:
        for record in store.lines(SAMPLES_FILE):
            generated[(record["task_id"], record["try"])] = record["response"]
    done: dict[str, dict] = {}
    known = responses if responses is not None else generated
    for line in store.lines(RESULTS_FILE):
        if line.get("status") == "unavailable":
            continue  # the toolchain may be here now: run it again
        for entry in line.get("tries", []):
            if known.get((line["task_id"], entry["try"])) != entry["response"]:
                raise OutputDirMismatchError(
                    f"{store.file(RESULTS_FILE)} holds a result for {line['task_id']} try "
                    f"{entry['try']} made from another response; use a new --output folder"
                )
        done[line["task_id"]] = line
    return done, generated


def _as_finished(pool: ThreadPoolExecutor, solve: Callable, todo: Sequence[Exercise]):
    futures = [pool.submit(solve, exercise) for exercise in todo]
    for future in as_completed(futures):
        yield future.result()


def evaluate_polyglot(
    exercises: Sequence[Exercise],
    *,
    edit_format: str = "whole",
    responses: Mapping[tuple[str, int], str] | None = None,
    respond: Responder | None = None,
    output_dir: str | Path | None = None,
    sandbox: str = "auto",
    timeout: float = DEFAULT_TEST_TIMEOUT_S,
    progress: bool = True,
    run_info: Mapping[str, Any] | None = None,
    workers: int = 1,
    aider_compat: str | None = None,
    fitter: PromptFitter | None = None,
) -> PolyglotSummary:
    """Run both tries of every exercise and summarise; give `responses` or `respond`.

    `responses` ({(task_id, try): text}, e.g. from `read_responses`) must cover try 1 of every
    exercise; a missing try-2 response leaves a failed try 1 failed. `respond` is called for
    each try that is needed (e.g. `model_responder`). `workers` exercises run at once with
    `responses` (each test run is itself a multi-process build); a model runs one at a time.
    `aider_compat` (one of `AIDER_COMPAT`) enables the tests as aider's harness does.
    `fitter` fits each prompt to a model's context (`fitting.PromptFitter`; with `respond`).
    """
    check_aider_compat(aider_compat)
    if edit_format not in EDIT_FORMATS:
        raise ValueError(f"--edit-format {edit_format!r} unknown; use one of {EDIT_FORMATS}")
    if (responses is None) == (respond is None):
        raise ValueError("give either responses (a samples file) or respond (a model)")
    if timeout <= 0:
        raise ValueError(f"--test-timeout {timeout}: give a positive number of seconds")
    if responses is not None:
        ids = {exercise.task_id for exercise in exercises}
        unknown = sorted({task for task, _ in responses} - ids)
        if unknown:
            raise ValueError(
                f"{len(unknown)} response(s) name exercises not selected, e.g. {unknown[:3]}; "
                "check --data/--languages/--exercises/--limit or the samples file"
            )
        missing = sorted(task for task in ids if (task, 1) not in responses)
        if missing:
            raise ValueError(
                f"{len(missing)} selected exercise(s) have no try-1 response, e.g. {missing[:3]}; "
                "select only those in the samples file (--exercises/--languages)"
            )
    backend = resolve_sandbox(sandbox)
    settings = {
        "benchmark": BENCHMARK,
        "edit_format": edit_format,
        "test_timeout_s": timeout,
        "aider_compat": aider_compat,
        "source": "samples" if responses is not None else "model",
        **({"max_prompt_tokens": fitter.max_prompt_tokens} if fitter is not None else {}),
        **(dict(run_info) if run_info else {}),
    }
    store = RunStore.open(output_dir)
    done, generated = _resume(store, settings, responses)
    samples_log = store.appender(SAMPLES_FILE)

    def answer(exercise: Exercise, number: int, prompt: str) -> str | None:
        key = (exercise.task_id, number)
        if responses is not None:
            return responses.get(key)
        if key not in generated:
            assert respond is not None
            generated[key] = respond(exercise, number, prompt)
            samples_log.append({"task_id": key[0], "try": number, "response": generated[key]})
        return generated[key]

    todo = [e for e in exercises if e.task_id not in done]
    if done:
        print(f"{len(done)} exercise(s) already done in {store.folder}; running {len(todo)}")
    workers = 1 if respond is not None else max(1, workers)  # a model answers one at a time

    def solve(exercise: Exercise) -> dict[str, Any]:
        return solve_exercise(
            exercise,
            answer,
            edit_format=edit_format,
            sandbox=backend,
            timeout=timeout,
            aider_compat=aider_compat,
            fitter=fitter,
        )

    def run(emit: Callable[[dict[str, Any]], None]) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="polyglot", disable=not progress, unit="exercise")
        pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            # results are written by this thread, in the order exercises finish
            finished = map(solve, todo) if pool is None else _as_finished(pool, solve, todo)
            for line in finished:
                emit(line)
                bar.update()
        finally:
            bar.close()
            if pool is not None:  # a crash or Ctrl-C: do not run the queued exercises
                pool.shutdown(wait=True, cancel_futures=True)

    try:
        seconds = store.judge(run, done, key=lambda line: line["task_id"])
    finally:
        samples_log.close()
    lines = [done[e.task_id] for e in exercises]
    summary = summarize(
        lines, {**settings, "sandbox": backend, "workers": workers}, {"execution_s": seconds}
    )
    store.write_summary(summary)
    return summary


def check_examples(
    exercises: Sequence[Exercise],
    *,
    sandbox: str = "auto",
    timeout: float = DEFAULT_TEST_TIMEOUT_S,
    progress: bool = True,
    aider_compat: str | None = None,
) -> list[dict[str, Any]]:
    """Run every exercise's example solution: does each toolchain work, and how long does a
    test run take? One row per exercise: task_id, status (`unavailable`, with the reason, when
    the toolchain or something the exercise or its reference needs is missing here), wall and
    CPU seconds (the test processes' user+system time; None under bubblewrap, which does not
    pass it up), and the output if not passed.
    """
    import resource

    from tqdm.auto import tqdm

    backend = resolve_sandbox(sandbox)
    rows = []
    for exercise in tqdm(exercises, desc="checking examples", disable=not progress):
        available, missing = reference_status(exercise)
        if not available:
            rows.append({"task_id": exercise.task_id, "status": "unavailable", "reason": missing})
            continue
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        status, output, seconds = run_tests(
            exercise,
            example_solution(exercise),
            sandbox=backend,
            timeout=timeout,
            aider_compat=aider_compat,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        row = {"task_id": exercise.task_id, "status": status, "wall_s": round(seconds, 2)}
        # bubblewrap does not hand its children's CPU time up to us: only measurable without it
        row["cpu_s"] = round(cpu, 2) if backend != "bwrap" else None
        if status != "passed":
            row["output"] = output
        rows.append(row)
    return rows


def reference_samples(exercises: Sequence[Exercise]) -> list[dict[str, Any]]:
    """Samples-file lines answering try 1 of each exercise with its example solution in the
    `whole` format (`example_solution`: extra reference files at their own names): run with
    `--samples`, every exercise whose reference `check_examples` passes must pass, and every
    response be well-formed."""
    return [
        {
            "task_id": exercise.task_id,
            "try": 1,
            "response": "The reference solution.\n\n" + format_files(example_solution(exercise)),
        }
        for exercise in exercises
    ]


# --------------------------------------------------------------------------------------------------
# Command line


def add_polyglot_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags only Polyglot needs, for scripts/evaluate.py.

    Shared flags come from evaluate.py itself: `--benchmark polyglot`, `--data DIR` (the
    exercises' top folder), `--limit`, `--samples FILE` (`{"task_id", "try", "response"}`
    lines), `--model-type/--ckpt/--tokenizer/--device/--dtype/--quantize`, `--temperature`,
    `--top-p`, `--max-new-tokens`, `--seed`, `--sandbox`, `--output`, `--no-progress`.
    """
    group = parser.add_argument_group("polyglot (--benchmark polyglot)")
    # Defaults are None, so that the command line can tell these flags were given to another
    # benchmark; run_polyglot reads None as the default.
    group.add_argument(
        "--edit-format", choices=EDIT_FORMATS, help="how responses edit files (default whole)"
    )
    group.add_argument(
        "--languages", help="comma-separated: cpp,go,java,javascript,python,rust (default: all)"
    )
    group.add_argument("--exercises", help="comma-separated exercise names or language/name ids")
    group.add_argument(
        "--test-timeout",
        type=float,
        help=f"seconds per test run, build included (default {DEFAULT_TEST_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--aider-compat",
        nargs="?",
        const=AIDER_COMPAT[0],
        choices=AIDER_COMPAT,
        help="enable the tests as aider's harness does, to set rates beside its leaderboard: "
        "JavaScript only xtest (not xit), Java only @Disabled(...); 2025-02 (the default when "
        "given bare) runs all C++ tests as aider has since 2025-02-06, 2024-12 only those ahead "
        "of EXERCISM_RUN_ALL_TESTS, as for the leaderboard's earlier rows (see README)",
    )


POLYGLOT_FLAGS = ("edit_format", "languages", "exercises", "test_timeout", "aider_compat")


def _split(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()] or None


def run_polyglot(options: argparse.Namespace | Any) -> PolyglotSummary:
    """What `scripts/evaluate.py --benchmark polyglot` runs, from its parsed flags.

    Reads `data` (required: the folder holding `<language>/exercises/practice/`),
    `edit_format`, `languages`, `exercises`, `limit`, `samples` or `model_type` + `ckpt`
    (+ `tokenizer`, `device`, `dtype`, `quantize`, `temperature`, `top_p`, `max_new_tokens`,
    `seed`, `h_cycles`/`l_cycles`/`segments`), `output`, `test_timeout`, `aider_compat`,
    `sandbox`, `workers` (exercises at once, samples files only), `no_progress`; missing or
    None attributes take their defaults (whole, 180 s, our test rules, auto, 1 worker). Prints
    the table and returns the summary.
    """
    get = lambda name, default=None: getattr(options, name, default)  # noqa: E731
    if not get("data"):
        raise ValueError("--benchmark polyglot needs --data DIR (the polyglot-benchmark folder)")
    check_source(options)
    samples, ckpt = get("samples"), get("ckpt")
    exercises = load_exercises(
        get("data"),
        languages=_split(get("languages")),
        exercises=_split(get("exercises")),
        limit=get("limit"),
    )
    output = get("output") or default_output(BENCHMARK)
    common = {
        "edit_format": get("edit_format") or "whole",
        "output_dir": output,
        "sandbox": get("sandbox") or "auto",
        "timeout": (DEFAULT_TEST_TIMEOUT_S if get("test_timeout") is None else get("test_timeout")),
        "progress": not get("no_progress", False),
        "aider_compat": get("aider_compat"),
    }
    workers = get("workers") or 1
    if samples is not None:
        responses = read_responses(samples)
        wanted = {exercise.task_id for exercise in exercises}
        kept = {key: text for key, text in responses.items() if key[0] in wanted}
        if len(kept) < len(responses):
            print(f"{len(responses) - len(kept)} response(s) are outside the selection; skipped")
        covered = [e for e in exercises if (e.task_id, 1) in kept]
        if covered and len(covered) < len(exercises):
            print(
                f"NOTE: {len(exercises) - len(covered)} of the {len(exercises)} selected exercises "
                f"have no try-1 response; the rates are over the {len(covered)} that do"
            )
        exercises = covered or exercises
        summary = evaluate_polyglot(exercises, responses=kept, workers=workers, **common)
    else:
        resolve_sandbox(common["sandbox"])  # fail before loading a model
        model, tokenizer, schedule = load_model_from_args(options)
        # a model answers one prompt at a time; --dtype is applied by the load, --compile unused
        sampling = replace(
            SamplingSettings.from_args(options, max_new_tokens=1024), dtype=None, compile=False
        )
        respond = model_responder(model, tokenizer, sampling)
        fitter = PromptFitter.for_model(model, tokenizer, sampling.max_new_tokens)
        run_info = {"model_type": get("model_type"), "ckpt": str(Path(ckpt).resolve())}
        if schedule:
            run_info["schedule"] = schedule
        run_info.update(sampling.recorded())
        summary = evaluate_polyglot(
            exercises, respond=respond, run_info=run_info, fitter=fitter, **common
        )
    print(format_polyglot_table(summary))
    print(f"wrote {Path(output) / RESULTS_FILE} and {SUMMARY_FILE}")
    return summary


def format_polyglot_table(summary: PolyglotSummary) -> str:
    """The harness's table, then one row per language."""
    rows = [format_table(summary), "language     exercises  pass_1   pass_2   well-formed"]
    for language, rates in summary.per_language.items():
        if rates["exercises"] == 0:
            rows.append(f"{language:<12} unavailable: {summary.unavailable.get(language, '')}")
            continue
        rows.append(
            f"{language:<12} {rates['exercises']:>9}  {100 * rates['pass_rate_1']:6.1f}%"
            f"  {100 * rates['pass_rate_2']:6.1f}%  {100 * rates['percent_well_formed']:6.1f}%"
        )
    for task_id, reason in summary.unavailable.items():
        if "/" in task_id:
            rows.append(f"unavailable: {task_id}: {reason}")
    if summary.errors.get("malformed_responses"):
        rows.append(f"malformed responses: {summary.errors['malformed_responses']}")
    if "prompt_fit" in summary.breakdown:
        limit = summary.settings.get("max_prompt_tokens")
        rows.append(
            f"prompts fitted to {limit} tokens   try 1: truncated  too long   "
            "try 2: no history  truncated  too long   answered  well-formed"
        )
        for language, rates in [*summary.per_language.items(), ("all", summary.breakdown)]:
            one, two = rates["prompt_fit"]["try_1"], rates["prompt_fit"]["try_2"]
            rows.append(
                f"{language:<32} {one['truncated']:>9} {one['prompt_too_long']:>9} "
                f"{two['history_dropped']:>18} {two['truncated']:>10} {two['prompt_too_long']:>9}"
                f" {rates['prompt_fit']['answered']:>10}"
                f" {100 * rates['prompt_fit']['percent_well_formed_answered']:>11.1f}%"
            )
    return "\n".join(rows)


__all__ = [
    "BENCHMARK",
    "SANDBOXES",
    "POLYGLOT_FLAGS",
    "OutputDirMismatchError",
    "PolyglotSummary",
    "TryResult",
    "add_polyglot_arguments",
    "attempt",
    "check_examples",
    "evaluate_polyglot",
    "fixed_files",
    "format_polyglot_table",
    "model_responder",
    "read_responses",
    "reference_samples",
    "run_polyglot",
    "run_tests",
    "solve_exercise",
    "summarize",
]
