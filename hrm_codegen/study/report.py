"""A study's results: results.json, report.md and plots, from the run folders as they stand.

Everything is read back from disk (metrics.jsonl, trainer_state.json, the evaluation cache), so the
report can be rebuilt at any time, also from an unfinished study. Spread over seeds is shown as
mean +- half the range with every seed's value listed; with two seeds that is all the data says.
A difference counts as "beyond seed noise" only when every seed of one arm beats every seed of the
other: a rule fixed here, before any result, not chosen after looking.
"""

from __future__ import annotations

import json
import math
import platform
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hrm_codegen.run_layout import CONFIG_SNAPSHOT, METRICS_FILE
from hrm_codegen.study.exec_report import exec_data_record, exec_markdown, exec_plots
from hrm_codegen.study.executors import threads_per_job
from hrm_codegen.study.runs import EVAL_FILE, RunKey, model_facts, read_json
from hrm_codegen.study.spec import StudySpec, finite_or_inf


class StudyState(Protocol):
    """What a report reads of a study: `runner.StudyRunner` is one. Named by shape, not imported:
    the runner writes its report at the end of `run`, so the report sits below it."""

    spec: StudySpec
    out: Path
    tokenizer_dir: Path | str | None
    corpus_dir: Path | None

    def log(self, message: str) -> None: ...

    def keys(self) -> dict[str, list[RunKey]]: ...

    def status(self, key: RunKey) -> str: ...

    def source(self, key: RunKey) -> Path: ...

    def selected_lr(self, arm: str) -> float: ...


CURVE_KEYS = ("val/bpb", "val/mbpp_bpb", "val/exec_bpb", "val/loss")
PLOTS = ("bpb_vs_flops", "bpb_vs_time", "bpb_vs_tokens", "lr_sweep", "test_time")


def _curve(run_dir: Path) -> list[dict[str, float]]:
    """Evaluation records (one per step; a resumed run's repeats keep the latest)."""
    from hrm_codegen.training.logging import read_metrics

    if not (run_dir / METRICS_FILE).is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for row in read_metrics(run_dir):
        if any(k in row for k in CURVE_KEYS):
            point = {
                k: row[k] for k in ("step", "tokens_seen", "flops", "train_seconds") if k in row
            }
            point.update({k: finite_or_inf(row[k]) for k in CURVE_KEYS if k in row})
            # a multi-language run's per-language bpb and tokens (absent otherwise)
            point.update(
                {
                    k: finite_or_inf(v) if k.startswith("val/bpb/") else v
                    for k, v in row.items()
                    if k.startswith(("val/bpb/", "tokens_seen/"))
                }
            )
            by_step[int(row["step"])] = point
    return [by_step[s] for s in sorted(by_step)]


def run_summary(runner: StudyState, key: RunKey) -> dict[str, Any]:
    """Everything the report says about one run (from its folder here, else its record)."""
    from hrm_codegen.study.records import REPRODUCED_FILE, run_facts, trainer_state

    folder = runner.source(key)
    status = runner.status(key)
    out: dict[str, Any] = {
        "stage": key.stage,
        "arm": key.arm,
        "seed": key.seed,
        "lr": key.lr,
        "train_lr": key.lr * (runner.spec.sft.lr_scale if key.stage == "sft" else 1.0),
        "status": status,
        "run_dir": str(key.path(runner.out)),
        "from_record": folder != key.path(runner.out),
    }
    curve = _curve(folder)
    out["curve"] = curve
    out["provenance"] = _provenance(folder)
    state = trainer_state(folder)
    if state:
        out.update(
            steps=state["step"],
            tokens=state["tokens_seen"],
            flops=state.get("flops_seen"),
            train_seconds=state.get("train_seconds"),
        )
        if state.get("train_seconds"):
            out["tok_s"] = state["tokens_seen"] / state["train_seconds"]
        out.update(run_facts(folder, model_facts))
    for metric in CURVE_KEYS:
        values = [p[metric] for p in curve if metric in p]
        if values:
            out[f"final {metric}"] = values[-1] if status != "diverged" else math.inf
            out[f"best {metric}"] = min(values)
    cache = read_json(folder / EVAL_FILE)
    if "test_time" in cache:
        out["test_time"] = cache["test_time"]
    if "pass_at_k" in cache:
        out["pass_at_k"] = cache["pass_at_k"]
    if "exec" in cache:
        out["exec"] = cache["exec"]
    reproduced = read_json(key.path(runner.out) / REPRODUCED_FILE) or read_json(
        folder / REPRODUCED_FILE
    )
    if reproduced:
        out["reproduced"] = reproduced
    return out


def _provenance(run_dir: Path) -> dict[str, Any]:
    """What the run recorded of its data and numeric environment (config.yaml `provenance`)."""
    from omegaconf import OmegaConf

    config = run_dir / CONFIG_SNAPSHOT
    if not config.is_file():
        return {}
    recorded = OmegaConf.load(config).get("provenance")
    return OmegaConf.to_container(recorded) if recorded is not None else {}


def data_record(runner: StudyState, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's corpus and tokenizer, by fingerprint, checked against every run's record.

    Runs trained on another corpus or tokenizer than the study's cannot share its tables: a
    mismatch (or a run that recorded none) is a `StudyConfigError` naming both fingerprints."""
    from hrm_codegen.data.corpus import read_manifest
    from hrm_codegen.study.spec import StudyConfigError
    from hrm_codegen.tokenization import load_tokenizer, tokenizer_fingerprint

    if runner.corpus_dir is None or runner.tokenizer_dir is None:
        return {}
    manifest = read_manifest(runner.corpus_dir)
    expected = {
        "corpus_fingerprint": manifest["fingerprint"],
        "tokenizer_fingerprint": tokenizer_fingerprint(load_tokenizer(runner.tokenizer_dir)),
    }
    for run in runs:
        if run["status"] == "new":
            continue
        keys = ["tokenizer_fingerprint"]
        if run["stage"] == "pretrain":  # fine-tuning reads MBPP; its corpus is its start's
            keys.append("corpus_fingerprint")
        for key in keys:
            found = run["provenance"].get(key)
            if found != expected[key]:
                raise StudyConfigError(
                    f"{run['run_dir']} recorded {key.split('_')[0]} fingerprint {found} but the "
                    f"study's is {expected[key]}; runs on other data cannot share one table: "
                    "move that run away (it retrains) or point the study at its corpus"
                )
    return {
        **expected,
        "source": manifest.get("source", {}),
        "files": manifest.get("files", {}),
        "splits": {
            split: {k: v for k, v in info.items() if k != "shards"}
            for split, info in manifest.get("splits", {}).items()
        },
        "decontamination": (manifest.get("config") or {}).get("decontamination"),
        "near_dedup": (manifest.get("config") or {}).get("near_dedup"),
    }


def _stats(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.inf, "half_range": 0.0, "values": values}
    return {
        "mean": sum(finite) / len(finite),
        "half_range": (max(finite) - min(finite)) / 2,
        "values": values,
    }


def collect(runner: StudyState) -> dict[str, Any]:
    """results.json's content."""
    spec = runner.spec
    keys = runner.keys()
    runs = [run_summary(runner, k) for k in keys["sweep"] + keys["seeds"] + keys["sft"]]
    sweep_done = all(runner.status(k) in ("done", "diverged") for k in keys["sweep"])
    selected = {arm: runner.selected_lr(arm) for arm in spec.all_arms} if sweep_done else {}
    arms: dict[str, Any] = {}
    for arm, lr in selected.items():
        entry: dict[str, Any] = {"selected_lr": lr}
        if arm in spec.sft_arms:  # fine-tuned from another arm's pretraining runs
            entry["pretrained"] = spec.sft_arms[arm].pretrained
        for stage in ("pretrain", "sft"):
            chosen = [
                r
                for r in runs
                if r["arm"] == arm
                and r["stage"] == stage
                and r["lr"] == lr
                and r["status"] in ("done", "diverged")
            ]
            if not chosen:
                continue
            block: dict[str, Any] = {"seeds": [r["seed"] for r in chosen]}
            for metric in (
                "final val/bpb",
                "best val/bpb",
                "final val/mbpp_bpb",
                "final val/exec_bpb",
                "best val/exec_bpb",
                "final val/loss",
            ):
                if any(metric in r for r in chosen):
                    block[metric] = _stats([r.get(metric, math.inf) for r in chosen])
            for fact in (
                "params",
                "params_body",
                "flops_per_token",
                "steps",
                "depth",
                "model_type",
            ):
                if fact in chosen[0]:
                    block[fact] = chosen[0][fact]
            for fact in ("tokens", "flops", "train_seconds", "tok_s"):
                values = [r[fact] for r in chosen if r.get(fact) is not None]
                if values:
                    block[fact] = _stats([float(v) for v in values])
            passes = [r["pass_at_k"] for r in chosen if "pass_at_k" in r]
            if passes:
                block["pass_at_k"] = {
                    k: _stats([p[k] for p in passes]) for k in passes[0] if k.startswith("pass@")
                }
                block["pass_at_k_setup"] = {
                    k: passes[0][k] for k in ("num_samples", "tasks", "temperature", "split")
                }
            if any(r.get("exec") for r in chosen):
                from hrm_codegen.study.exec_report import exec_arm_block

                block["exec"] = exec_arm_block(chosen)
            times = [r["test_time"] for r in chosen if "test_time" in r]
            if times:
                block["test_time"] = {k: _stats([t[k] for t in times if k in t]) for k in times[0]}
            entry[stage] = block
        arms[arm] = entry
    result = {
        "study": spec.name,
        "description": spec.description,
        "protocol": {
            "arms": {k: list(v) for k, v in spec.arms.items()},
            "sft_arms": {
                k: {"pretrained": v.pretrained, "sft": list(v.overrides)}
                for k, v in spec.sft_arms.items()
            },
            "seeds": list(spec.seeds),
            "lr_sweep": list(spec.lr_sweep),
            "select_metric": spec.select_metric,
            "common": list(spec.common),
            "pretrain": {
                "flop_budget": spec.pretrain.flop_budget,
                "max_steps": spec.pretrain.max_steps,
                "overrides": list(spec.pretrain.overrides),
            },
            "sft": None
            if spec.sft is None
            else {
                "flop_budget": spec.sft.flop_budget,
                "lr_scale": spec.sft.lr_scale,
                "overrides": list(spec.sft.overrides),
            },
            "test_time_multipliers": list(spec.test_time_multipliers),
            "jobs": spec.jobs,
            "threads_per_job": threads_per_job(spec.jobs),
        },
        "data": exec_data_record(runner, runs)
        if spec.prepare.get("exec")
        else data_record(runner, runs),
        "arms": arms,
        "equal_tokens": _equal_tokens(runs, selected),
        **_languages_entry(runs, selected),
        "runs": runs,
        "sessions": json.loads((runner.out / "sessions.json").read_text())
        if (runner.out / "sessions.json").is_file()
        else [],
        "machine": _machine(),
    }
    return result


def _equal_tokens(runs: list[dict[str, Any]], selected: dict[str, float]) -> dict[str, Any]:
    """val/bpb of every selected pretraining run at the token count the shortest arm reached,
    interpolated on its evaluation curve (equal data seen, unequal compute)."""
    import numpy as np

    chosen = [
        r
        for r in runs
        if r["stage"] == "pretrain" and selected.get(r["arm"]) == r["lr"] and r["status"] == "done"
    ]
    if not chosen:
        return {}
    tokens = min(r["tokens"] for r in chosen)
    if not any("val/bpb" in p for r in chosen for p in r["curve"]):
        return {}  # no corpus bpb (an exec study): nothing to compare at equal tokens
    per_arm: dict[str, list[float]] = {}
    for r in chosen:
        points = [(p["tokens_seen"], p["val/bpb"]) for p in r["curve"] if "val/bpb" in p]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        value = float(np.interp(tokens, xs, ys)) if xs and xs[0] <= tokens else math.nan
        per_arm.setdefault(r["arm"], []).append(value)
    return {"tokens": tokens, "val/bpb": {arm: _stats(v) for arm, v in per_arm.items()}}


def _languages_entry(runs: list[dict[str, Any]], selected: dict[str, float]) -> dict[str, Any]:
    """`{"languages": ...}` when the runs logged val/bpb/<language> (else nothing, so a
    one-language study's results keep their keys): each selected arm's final bpb per language,
    and, for each language every run trained on, its bpb at the same count of that language's
    tokens (the fewest any run saw), interpolated on tokens_seen/<language>."""
    import numpy as np

    chosen = [
        r
        for r in runs
        if r["stage"] == "pretrain" and selected.get(r["arm"]) == r["lr"] and r["status"] == "done"
    ]
    names = sorted(
        {
            k.split("/", 2)[2]
            for r in chosen
            for p in r["curve"]
            for k in p
            if k.startswith("val/bpb/")
        }
    )
    if not names:
        return {}
    final: dict[str, dict[str, Any]] = {}
    for r in chosen:
        for lang in names:
            values = [p[f"val/bpb/{lang}"] for p in r["curve"] if f"val/bpb/{lang}" in p]
            if values:
                final.setdefault(r["arm"], {}).setdefault(lang, []).append(values[-1])
    equal: dict[str, Any] = {}
    for lang in names:
        key = f"tokens_seen/{lang}"
        seen = [max((p.get(key, 0) for p in r["curve"]), default=0) for r in chosen]
        if not seen or min(seen) <= 0:
            continue  # some run never trained on it: compared by final value only
        tokens = min(seen)
        per_arm: dict[str, list[float]] = {}
        for r in chosen:
            points = [
                (p[key], p[f"val/bpb/{lang}"])
                for p in r["curve"]
                if key in p and f"val/bpb/{lang}" in p
            ]
            xs, ys = [x for x, _ in points], [y for _, y in points]
            value = float(np.interp(tokens, xs, ys)) if xs and xs[0] <= tokens else math.nan
            per_arm.setdefault(r["arm"], []).append(value)
        equal[lang] = {"tokens": tokens, "bpb": {a: _stats(v) for a, v in per_arm.items()}}
    return {
        "languages": {
            "names": names,
            "final": {a: {lang: _stats(v) for lang, v in by.items()} for a, by in final.items()},
            "equal_tokens": equal,
        }
    }


def _machine() -> dict[str, Any]:
    import os

    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


# ----------------------------------------------------------------------------- markdown


def _fmt(stats: dict[str, Any] | None, digits: int = 3) -> str:
    if not stats:
        return "-"
    mean = stats["mean"]
    if not math.isfinite(mean):
        return "diverged"
    values = "/".join(f"{v:.{digits}f}" if math.isfinite(v) else "inf" for v in stats["values"])
    if len(stats["values"]) == 1:
        return values
    return f"{mean:.{digits}f} ± {stats['half_range']:.{digits}f} ({values})"


def _beyond_noise(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """'yes' when every seed of a is lower than every seed of b (or the reverse)."""
    if not a or not b:
        return "-"
    va, vb = a["values"], b["values"]
    if len(va) < 2 or len(vb) < 2:
        return "n/a (one seed)"
    if max(va) < min(vb) or max(vb) < min(va):
        return "yes"
    return "no"


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _budget_line(stage: dict[str, Any]) -> str:
    if stage.get("max_steps"):
        return (
            f"- Training budget: {stage['max_steps']} optimiser steps per run, the same batch "
            "for every arm (equal examples and about equal tokens; FLOPs differ by arm)."
        )
    return (
        f"- Pretraining budget: {_si(stage['flop_budget'])}FLOPs of training per run "
        "(forward + backward as executed, hrm_codegen/training/flops.py); each arm's steps follow "
        "from its FLOPs per token."
    )


def headline_metric(result: dict[str, Any]) -> str:
    """The validation metric the tables and curves show: the study's selection metric when it is
    a curve metric (val/exec_bpb for an exec study), else val/bpb."""
    select = result["protocol"].get("select_metric")
    return select if select in CURVE_KEYS else "val/bpb"


def render_markdown(result: dict[str, Any], command: str, plots: list[str]) -> str:
    p = result["protocol"]
    bpb = headline_metric(result)
    lines = [f"# Study `{result['study']}`", ""]
    if result["description"]:
        lines += [result["description"].strip(), ""]
    total = sum(s["seconds"] for s in result["sessions"])
    m = result["machine"]
    jobs = int(p.get("jobs", 1))
    threads = (
        f"{m['torch_threads']} threads"
        if jobs == 1
        else f"{jobs} runs side by side, {p.get('threads_per_job', 1)} thread(s) each"
    )
    lines += [
        "Reproduce (resumes, then rewrites this page and its plots):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Machine: {m.get('cpu_model') or m.get('gpu') or m['processor']}, {m['cpus']} CPUs, "
        f"torch {m['torch']} ({threads}), Python {m['python']}. Wall time of the invocations "
        f"that ran to their end: {total / 60:.1f} min over {len(result['sessions'])} (one stopped "
        "early, e.g. at a session's end, is not counted; each run's own train time is below).",
        "",
        "## Protocol (fixed before any run)",
        "",
        "- Arms: "
        + "; ".join(f"`{a}`: `{' '.join(o) or '(defaults)'}`" for a, o in p["arms"].items()),
        _budget_line(p["pretrain"]),
        f"- Learning-rate sweep {p['lr_sweep']} on seed {p['seeds'][0]}, selected per arm by the "
        f"lowest final `{p['select_metric']}` (validation split); seeds {p['seeds'][1:]} "
        "then run at the selected value.",
    ]
    if p["sft"]:
        lines.append(
            f"- Fine-tuning on MBPP train: {_si(p['sft']['flop_budget'])}FLOPs per run, lr = "
            f"selected x {p['sft']['lr_scale']}, from each selected pretraining run."
        )
    for arm, extra in (p.get("sft_arms") or {}).items():
        lines.append(
            f"- `{arm}` differs from `{extra['pretrained']}` only at fine-tuning: it starts from "
            f"`{extra['pretrained']}`'s selected pretraining runs, fine-tuned with "
            f"`{' '.join(extra['sft']) or '(no extra overrides)'}`."
        )
    lines += [
        f"- Shared settings: `{' '.join(p['common'] + p['pretrain']['overrides'])}`",
        "- Wall-clock numbers depend on what else the machine ran at the time; FLOPs and "
        "tokens do not.",
        "- Spread: mean ± half the range over seeds (each seed's value in brackets). "
        '"Beyond seed noise" means every seed of one arm beats every seed of the other.',
        "",
        *_data_lines(result.get("data") or {}, result["study"]),
        *exec_markdown(result),
    ]
    arms = result["arms"]
    if arms:
        lines += [
            "## Pretraining at equal training FLOPs (selected learning rate)"
            if not p["pretrain"].get("max_steps")
            else "## Training at equal steps (selected learning rate)",
            "",
            "| arm | params (w/o emb+head) | train FLOPs/token | lr | steps | tokens | FLOPs "
            f"| {bpb} final | {bpb} best | val/mbpp_bpb | train time | tokens/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for arm, entry in arms.items():
            b = entry.get("pretrain")
            if not b:
                continue
            lines.append(
                f"| {arm} | {_si(b.get('params'))} ({_si(b.get('params_body'))}) | "
                f"{_si(b.get('flops_per_token'))} | {entry['selected_lr']:g} | {b.get('steps', '-')} | "
                f"{_si(b['tokens']['mean']) if 'tokens' in b else '-'} | "
                f"{_si(b['flops']['mean']) if 'flops' in b else '-'} | "
                f"{_fmt(b.get(f'final {bpb}'))} | {_fmt(b.get(f'best {bpb}'))} | "
                f"{_fmt(b.get('final val/mbpp_bpb'))} | "
                f"{b['train_seconds']['mean'] / 60:.1f} min | "
                f"{b['tok_s']['mean']:.0f} |"
                if "train_seconds" in b and "tok_s" in b
                else f"| {arm} | {_si(b.get('params'))} | ... | ... | ... | ... | ... | "
                f"{_fmt(b.get(f'final {bpb}'))} | {_fmt(b.get(f'best {bpb}'))} | "
                f"{_fmt(b.get('final val/mbpp_bpb'))} | - | - |"
            )
        lines.append("")
        sweep_range = (min(p["lr_sweep"]), max(p["lr_sweep"]))
        edges = [
            f"`{arm}` ({'smallest' if e['selected_lr'] == sweep_range[0] else 'largest'})"
            for arm, e in arms.items()
            if e["selected_lr"] in sweep_range and "pretrained" not in e
        ]
        if edges:
            lines += [
                "Selected at an edge of the sweep: "
                + ", ".join(edges)
                + "; the best learning rate "
                "of those arms may lie outside the swept range.",
                "",
            ]
        first = next(iter(arms))
        ref = arms[first].get("pretrain", {}).get(f"final {bpb}")
        if ref:
            lines += [
                f"Differences in final {bpb} against `{first}` (negative: `{first}` is better):",
                "",
                f"| arm | Δ {bpb} | beyond seed noise |",
                "|---|---:|---|",
            ]
            for arm, entry in list(arms.items())[1:]:
                other = entry.get("pretrain", {}).get(f"final {bpb}")
                if "pretrained" in entry:
                    continue  # no pretraining runs of its own
                if other and math.isfinite(other["mean"]) and math.isfinite(ref["mean"]):
                    lines.append(
                        f"| {arm} | {ref['mean'] - other['mean']:+.3f} | {_beyond_noise(ref, other)} |"
                    )
            lines.append("")
    eq = result.get("equal_tokens")
    if eq:
        lines += [
            f"## Equal tokens: val/bpb after {_si(eq['tokens'])} tokens",
            "",
            "Interpolated on each run's evaluation curve at the token count of the arm that saw "
            "the fewest tokens within the budget (equal data, unequal compute).",
            "",
            "| arm | val/bpb |",
            "|---|---:|",
        ]
        lines += [f"| {arm} | {_fmt(s)} |" for arm, s in eq["val/bpb"].items()]
        lines.append("")
    lines += _language_lines(result.get("languages"))
    tt = {
        arm: e["pretrain"]["test_time"]
        for arm, e in arms.items()
        if "test_time" in e.get("pretrain", {})
    }
    if tt:
        names = list(next(iter(tt.values())))
        lines += [
            "## Test-time compute: val/bpb of each trained HRM with more recurrence at inference",
            "",
            "`H_xM` runs M times the trained H cycles per segment, `L_xM` M times the L cycles per "
            "H cycle; weights as trained (`evaluate.py --metric bpb --h-cycles/--l-cycles`).",
            "",
            "| arm | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        lines += [
            f"| {arm} | " + " | ".join(_fmt(t.get(n)) for n in names) + " |"
            for arm, t in tt.items()
        ]
        lines.append("")
    sft = {arm: e["sft"] for arm, e in arms.items() if "sft" in e}
    if sft:
        setup = next((b["pass_at_k_setup"] for b in sft.values() if "pass_at_k_setup" in b), None)
        ks = sorted(
            {k for b in sft.values() for k in b.get("pass_at_k", {})}, key=lambda k: int(k[5:])
        )
        lines += ["## After fine-tuning on MBPP", ""]
        if setup:
            lines += [
                f"pass@k: unbiased estimator from n={setup['num_samples']} samples per task at "
                f"temperature {setup['temperature']} on {setup['tasks']} MBPP {setup['split']} tasks.",
                "",
            ]
        # One cell per column in every row: a header and separator of unequal width is not a
        # table in Markdown, which a report written before pass@k ran would otherwise be.
        lines += [
            "| " + " | ".join(["arm", "val/mbpp_bpb", "val/bpb (corpus)", *ks]) + " |",
            "|---|---:|---:|" + "---:|" * len(ks),
        ]
        for arm, b in sft.items():
            passes = [_fmt(b.get("pass_at_k", {}).get(k), 4) for k in ks]
            base = arms[arm].get("pretrained")
            label = f"{arm} (from `{base}`)" if base else arm
            cells = [
                label,
                _fmt(b.get("final val/mbpp_bpb")),
                _fmt(b.get("final val/bpb")),
                *passes,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    sweep = [r for r in result["runs"] if r["stage"] == "pretrain" and r["seed"] == p["seeds"][0]]
    if sweep:
        lines += [
            "## Every sweep point (pretraining, first seed)",
            "",
            f"| arm | lr | status | steps | {bpb} final | {bpb} best | val/mbpp_bpb | selected |",
            "|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in sweep:
            chosen = arms.get(r["arm"], {}).get("selected_lr") == r["lr"]
            lines.append(
                f"| {r['arm']} | {r['lr']:g} | {r['status']} | {r.get('steps', '-')} | "
                f"{r.get(f'final {bpb}', math.nan):.3f} | {r.get(f'best {bpb}', math.nan):.3f} | "
                f"{r.get('final val/mbpp_bpb', math.nan):.3f} | {'yes' if chosen else ''} |"
            )
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    lines += [
        "Each run is an ordinary run directory (`scripts/evaluate.py --ckpt`, "
        "`scripts/plot_runs.py`); every number here is in the study's `results.json`: beside "
        "`report.md` in the study folder, and in the folder of the same name as this page when "
        "published.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def _language_lines(block: dict[str, Any] | None) -> list[str]:
    """The per-language sections: final val/bpb/<language>, and bpb at equal tokens of it."""
    if not block:
        return []
    names = block["names"]
    lines = [
        "## Per language: final val/bpb/<language>",
        "",
        "| arm | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for arm, by in block["final"].items():
        lines.append(f"| {arm} | " + " | ".join(_fmt(by.get(n)) for n in names) + " |")
    lines.append("")
    for lang, eq in block["equal_tokens"].items():
        lines += [
            f"## Equal {lang} tokens: val/bpb/{lang} after {_si(eq['tokens'])} {lang} tokens",
            "",
            f"Interpolated on each run's curve against tokens_seen/{lang}, at the count of the "
            "run that saw the fewest (equal data of that language, whatever else it saw).",
            "",
            f"| arm | val/bpb/{lang} |",
            "|---|---:|",
        ]
        lines += [f"| {arm} | {_fmt(s)} |" for arm, s in eq["bpb"].items()]
        lines.append("")
    return lines


def _data_lines(data: dict[str, Any], study: str) -> list[str]:
    """The report's "Data" section: what every run read, by fingerprint."""
    if not data or "exec_fingerprint" in data:  # the exec benchmark: exec_report.exec_markdown
        return []
    source = data.get("source", {})
    pins = ", ".join(
        f"{k} {v}" for k, v in source.items() if k not in ("kind", "names_sha256") and v is not None
    )
    files = data.get("files", {})
    dropped = ", ".join(f"{k} {v}" for k, v in (files.get("dropped") or {}).items())
    splits = "; ".join(
        f"{name}: {info.get('documents', 0):,} documents, {info.get('tokens', 0):,} tokens"
        for name, info in data.get("splits", {}).items()
    )
    benchmarks = sorted((data.get("decontamination") or {}).get("benchmarks") or {})
    lines = [
        "## Data",
        "",
        f"- Corpus source `{source.get('kind', '?')}` ({pins}); ordered file list sha256 "
        f"`{source.get('names_sha256', '?')}`.",
        f"- Corpus fingerprint `{data['corpus_fingerprint']}` (sha256 of the tokenizer and the "
        "ordered token shards); tokenizer fingerprint "
        f"`{data['tokenizer_fingerprint']}`. Every run below recorded both, and they match.",
        f"- Files: {files.get('seen', 0):,} seen, {files.get('kept', 0):,} kept; dropped: "
        f"{dropped or 'none'} (decontaminated against {', '.join(benchmarks) or 'nothing'}"
        f"{'; MinHash near-duplicates removed' if data.get('near_dedup') else ''}).",
        f"- Splits: {splits}.",
        f"- Rebuild and check it: `python scripts/run_study.py study={study} prepare_only=true` "
        "prints the same fingerprint on any machine with the same Python.",
        "",
    ]
    return lines


def write_plots(result: dict[str, Any], folder: Path, prefix: str) -> list[str]:
    """PNG files in `folder`; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import EngFormatter

    arms = result["arms"]
    runs = [r for r in result["runs"] if r["stage"] == "pretrain"]
    written: list[str] = []
    bpb = headline_metric(result)
    colours = {arm: f"C{i}" for i, arm in enumerate(result["protocol"]["arms"])}

    def finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, name: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{result['study']}: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"{prefix}{name}.png", dpi=110)
        written.append(f"{prefix}{name}.png")

    def band(x_key: str, scale: float, label_unit: str, name: str, si_unit: str = "") -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if si_unit:  # ticks with SI prefixes (500 GFLOPs, 2 TFLOPs) instead of "x1e12" and 0.003
            ax.xaxis.set_major_formatter(EngFormatter(unit=si_unit))
        drawn = False
        for arm, entry in arms.items():
            chosen = [
                r
                for r in runs
                if r["arm"] == arm and r["lr"] == entry["selected_lr"] and r["curve"]
            ]
            curves = [
                [(p[x_key] / scale, p[bpb]) for p in r["curve"] if bpb in p and x_key in p]
                for r in chosen
            ]
            curves = [c for c in curves if c]
            if not curves:
                continue
            grid = np.linspace(max(c[0][0] for c in curves), min(c[-1][0] for c in curves), 50)
            ys = np.array([np.interp(grid, [x for x, _ in c], [y for _, y in c]) for c in curves])
            ys = np.where(np.isfinite(ys), ys, np.nan)
            ax.plot(
                grid,
                np.nanmean(ys, 0),
                color=colours[arm],
                label=f"{arm} (lr {entry['selected_lr']:g})",
            )
            if len(curves) > 1:
                ax.fill_between(
                    grid, np.nanmin(ys, 0), np.nanmax(ys, 0), color=colours[arm], alpha=0.2
                )
            drawn = True
        if drawn:
            title = f"{name.replace('_', ' ')} (band: seed range)"
            finish(fig, ax, label_unit, f"{bpb} (validation)", title, name)
        plt.close(fig)

    band("flops", 1.0, "training compute (FLOPs)", "bpb_vs_flops", si_unit="FLOPs")
    band("train_seconds", 60.0, "training wall-clock (minutes)", "bpb_vs_time")
    band("tokens_seen", 1e6, "training tokens (millions)", "bpb_vs_tokens")

    sweep = [r for r in runs if r["seed"] == result["protocol"]["seeds"][0]]
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm in result["protocol"]["arms"]:
            points = sorted(
                (r["lr"], r.get(f"final {bpb}", math.inf)) for r in sweep if r["arm"] == arm
            )
            xs = [x for x, y in points if math.isfinite(y)]
            ys = [y for x, y in points if math.isfinite(y)]
            if xs:
                ax.plot(xs, ys, "o-", color=colours[arm], label=arm)
        ax.set_xscale("log")
        title = f"learning-rate sweep (seed {result['protocol']['seeds'][0]})"
        finish(fig, ax, "learning rate", f"final {bpb}", title, "lr_sweep")
        plt.close(fig)

    tt = {
        arm: e["pretrain"]["test_time"]
        for arm, e in arms.items()
        if "test_time" in e.get("pretrain", {})
    }
    if tt:
        fig, ax = plt.subplots(figsize=(6, 4))
        multipliers = result["protocol"]["test_time_multipliers"]
        for arm, t in tt.items():
            for level, style in (("H", "o-"), ("L", "s--")):
                xs, ys = [], []
                for m in multipliers:
                    key = "x1" if m == 1 else f"{level}_x{m}"
                    if key in t and math.isfinite(t[key]["mean"]):
                        xs.append(m)
                        ys.append(t[key]["mean"])
                if xs:
                    ax.plot(xs, ys, style, color=colours[arm], label=f"{arm}: {level} cycles")
        ax.set_xscale("log", base=2)
        xlabel, ylabel = "inference cycles / trained cycles", "val/bpb (mean over seeds)"
        finish(fig, ax, xlabel, ylabel, "test-time recurrence", "test_time")
        plt.close(fig)
    written += exec_plots(result, folder, prefix, plt, colours)
    return written


def portable_command(command: str, spec: Any) -> str:
    """`command` as another checkout runs it: overrides that only restate a default (the output
    folder studies/<name>, the spec's records_dir) dropped, and paths inside the current folder
    made relative (a run from another worktree of this checkout wrote absolute ones)."""
    here = Path.cwd().resolve()
    defaults = {
        "output_dir": (Path("studies") / spec.name).resolve(),
        "study.records_dir": Path(spec.records_dir).resolve() if spec.records_dir else None,
    }
    kept = []
    for part in shlex.split(command):
        key, equals, value = part.partition("=")
        if equals and key in defaults and Path(value).resolve() == defaults[key]:
            continue
        if equals and Path(value).is_absolute() and Path(value).resolve().is_relative_to(here):
            part = f"{key}={Path(value).resolve().relative_to(here)}"
        kept.append(shlex.quote(part))
    return " ".join(kept)


def write_report(
    runner: StudyState, publish_dir: str | Path | None = None, command: str = ""
) -> Path:
    """results.json, report.md and plots in the study folder; with `publish_dir`, also
    `<publish_dir>/<study>.md` with its plots beside it as `<study>_*.png`."""
    result = collect(runner)
    # the command that ran the study reproduces it; a report_only rebuild just rewrites the page
    ran = [s["command"] for s in result["sessions"] if "report_only" not in s.get("command", "")]
    command = portable_command(ran[0] if ran and ran[0] else command, runner.spec)
    return write_pages(runner, result, command, write_plots, render_markdown, publish_dir)


def write_pages(
    runner: Any,
    result: dict[str, Any],
    command: str,
    plots_fn: Callable[[dict[str, Any], Path, str], list[str]],
    render_fn: Callable[[dict[str, Any], str, list[str]], str],
    publish_dir: str | Path | None = None,
) -> Path:
    """results.json, report.md and plots in the study folder; with `publish_dir`, also
    `<publish_dir>/<study>.md` with its plots beside it as `<study>_*.png` and its
    results.json in `<publish_dir>/<study>/` (every study kind)."""
    out = runner.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    plots = plots_fn(result, out, "")
    report = out / "report.md"
    report.write_text(render_fn(result, command, plots))
    if publish_dir is not None:
        publish = Path(publish_dir)
        publish.mkdir(parents=True, exist_ok=True)
        prefix = f"{result['study']}_"
        for name in plots:
            shutil.copy(out / name, publish / f"{prefix}{name}")
        page = render_fn(result, command, [f"{prefix}{name}" for name in plots])
        (publish / f"{result['study']}.md").write_text(page)
        records = publish / result["study"]
        records.mkdir(exist_ok=True)
        shutil.copy(out / "results.json", records / "results.json")
        runner.log(f"published {publish / (result['study'] + '.md')}")
    runner.log(f"wrote {report} and {out / 'results.json'}")
    return report
