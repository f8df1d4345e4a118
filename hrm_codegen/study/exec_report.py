"""The exec study's part of a study report: the benchmark it trained on (by fingerprint), accuracy
by difficulty bucket for every arm, accuracy on the harder-than-trained programs against inference
cycles, and whether an ACT model's Q head spends more segments on programs that take more steps.

Kept apart from report.py, which knows corpus studies; report.py calls these when the study's
`prepare` builds the exec benchmark."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def exec_data_record(runner: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The exec benchmark's manifest (settings, counts, fingerprint), checked against every
    run's recorded `exec_fingerprint` (runs on other programs cannot share the tables)."""
    from hrm_codegen.study.runs import read_json
    from hrm_codegen.study.spec import StudyConfigError
    from hrm_codegen.tokenization import load_tokenizer, tokenizer_fingerprint

    meta = read_json(Path(str(runner.corpus_dir)) / "meta.json")
    expected = {
        "exec_fingerprint": meta["fingerprint"],
        "tokenizer_fingerprint": tokenizer_fingerprint(load_tokenizer(runner.tokenizer_dir)),
    }
    for run in runs:
        if run["status"] == "new":
            continue
        for key, value in expected.items():
            found = run["provenance"].get(key)
            if found != value:
                raise StudyConfigError(
                    f"{run['run_dir']} recorded {key} {found} but the study's is {value}; runs "
                    "on other data cannot share one table: move that run away (it retrains)"
                )
    from hrm_codegen.data.exec_programs import load_exec_tasks
    from hrm_codegen.evaluation.exec_score import trivial_baselines

    folder = Path(str(runner.corpus_dir))
    scored = [s for s in ("test", "test_hard") if s in meta["splits"]]
    baselines = trivial_baselines(
        load_exec_tasks(folder, "train"),
        {split: load_exec_tasks(folder, split) for split in scored},
        meta["edges"],
    )
    return {
        **expected,
        "baselines": baselines,
        "settings": meta["settings"],
        "edges": meta["edges"],
        "generated": meta["generated"],
        "dropped": meta["dropped"],
        "splits": meta["splits"],
    }


def _mean_half_range(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "half_range": math.nan, "values": values}
    mean = sum(finite) / len(finite)
    return {"mean": mean, "half_range": (max(finite) - min(finite)) / 2, "values": values}


def exec_arm_block(chosen: list[dict[str, Any]]) -> dict[str, Any]:
    """Per multiplier and split: accuracy over seeds (mean ± half range) and per bucket (pooled
    over seeds); per split the ACT rank correlation over seeds."""
    scored = [r["exec"] for r in chosen if r.get("exec")]
    if not scored:
        return {}
    out: dict[str, Any] = {}
    for name in scored[0]:
        if name == "act":
            out["act"] = {
                split: {
                    "spearman_rho": _mean_half_range(
                        [s["act"][split]["spearman_rho"] for s in scored]
                    ),
                    "mean_segments": _mean_half_range(
                        [s["act"][split]["mean_segments"] for s in scored]
                    ),
                }  # fmt: skip
                for split in scored[0]["act"]
            }
            continue
        block = {}
        for split in scored[0][name]:
            runs = [s[name][split] for s in scored if name in s]
            buckets: dict[str, dict[str, int]] = {}
            for run in runs:
                for bucket, counts in run["buckets"].items():
                    pooled = buckets.setdefault(bucket, {"n": 0, "correct": 0})
                    pooled["n"] += counts["n"]
                    pooled["correct"] += counts["correct"]
            block[split] = {
                "accuracy": _mean_half_range([run["accuracy"] for run in runs]),
                "buckets": {
                    b: {**c, "accuracy": c["correct"] / c["n"]}
                    for b, c in buckets.items()
                    if c["n"]
                },
            }
        out[name] = block
    return out


def _acc(stats: dict[str, Any] | None) -> str:
    if not stats or not math.isfinite(stats["mean"]):
        return "-"
    values = "/".join(f"{100 * v:.1f}" for v in stats["values"])
    return f"{100 * stats['mean']:.1f} ± {100 * stats['half_range']:.1f} ({values})"


def exec_markdown(result: dict[str, Any]) -> list[str]:
    """The exec sections of the study page."""
    data = result.get("data") or {}
    arms = {a: e["pretrain"]["exec"] for a, e in result["arms"].items() if e.get("pretrain", {}).get("exec")}  # fmt: skip
    lines: list[str] = []
    if data.get("settings"):
        s = data["settings"]
        lines += [
            "## Data: the exec benchmark",
            "",
            f"- Generator `{s['generator']}`, seed {s['seed']}, Python {s['python']}; programs of "
            f"at most {s['max_statements']} statements nested {s['max_depth']} deep. Train, "
            f"validation and test hold programs of at most {s['train_max_steps']} executed steps; "
            f"test_hard more than {s['train_max_steps']} and at most {s['max_steps']}.",
            "- " + ", ".join(f"{k}: {v['tasks']:,} tasks" for k, v in data["splits"].items())
            + f"; {data['generated']:,} programs generated, dropped: "
            + ", ".join(f"{k} {v:,}" for k, v in data["dropped"].items()) + ".",
            f"- Fingerprint `{data['exec_fingerprint']}`; tokenizer `{data['tokenizer_fingerprint']}`. "
            "Every run below recorded both.",
            "",
        ]  # fmt: skip
    if not arms:
        return lines
    splits = list(next(iter(arms.values()))["x1"])
    lines += [
        "## Accuracy at the trained depth (greedy, exact match, %)",
        "",
        "Mean ± half the range over seeds (each seed in brackets).",
        "",
        "| arm | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    lines += [
        f"| {arm} | " + " | ".join(_acc(b["x1"][s]["accuracy"]) for s in splits) + " |"
        for arm, b in arms.items()
    ]
    for name, by_split in (data.get("baselines") or {}).items():  # no model: the floor
        cells = [f"{100 * by_split[s]:.1f}" if s in by_split else "-" for s in splits]
        lines.append(f"| *no model: {name}* | " + " | ".join(cells) + " |")
    buckets = sorted(
        {k for b in arms.values() for s in splits for k in b["x1"][s]["buckets"]},
        key=lambda name: float(name.lstrip("<=>")) + (0.5 if name.startswith(">") else 0),
    )
    lines += [
        "",
        "By executed steps (seeds pooled; the buckets above the training limit are test_hard):",
        "",
        "| arm | " + " | ".join(buckets) + " |",
        "|---|" + "---:|" * len(buckets),
    ]
    for arm, b in arms.items():
        cells = []
        for bucket in buckets:
            found = [
                b["x1"][s]["buckets"][bucket] for s in splits if bucket in b["x1"][s]["buckets"]
            ]
            n, right = sum(c["n"] for c in found), sum(c["correct"] for c in found)
            cells.append(f"{100 * right / n:.1f} (n={n})" if n else "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    deeper = {a: b for a, b in arms.items() if len([k for k in b if k.startswith("x")]) > 1}
    if deeper:
        names = sorted((k for k in next(iter(deeper.values())) if k.startswith("x")), key=lambda k: int(k[1:]))  # fmt: skip
        hard = "test_hard" if "test_hard" in splits else splits[-1]
        lines += [
            "",
            f"## Test-time depth: {hard} accuracy (%) with the H cycles scaled at inference",
            "",
            "| arm | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        lines += [
            f"| {arm} | " + " | ".join(_acc(b[n][hard]["accuracy"]) if n in b else "-" for n in names) + " |"
            for arm, b in deeper.items()
        ]  # fmt: skip
    act = {a: b["act"] for a, b in arms.items() if "act" in b}
    if act:
        lines += [
            "",
            "## Adaptive computation: segments asked for against executed steps",
            "",
            "Spearman rank correlation between a task's steps and the segments the Q head asks "
            "for on its prompt (positive: more compute for harder programs).",
            "",
            "| arm | split | rho | mean segments |",
            "|---|---|---:|---:|",
        ]
        for arm, block in act.items():
            for split, stats in block.items():
                rho, seg = stats["spearman_rho"], stats["mean_segments"]
                lines.append(
                    f"| {arm} | {split} | {rho['mean']:.3f} ± {rho['half_range']:.3f} | "
                    f"{seg['mean']:.2f} |"
                )
    lines.append("")
    return lines


def exec_plots(
    result: dict[str, Any], folder: Path, prefix: str, plt: Any, colours: dict[str, str]
) -> list[str]:
    """Accuracy by step bucket per arm, and test_hard accuracy against inference cycles."""
    arms = {a: e["pretrain"]["exec"] for a, e in result["arms"].items() if e.get("pretrain", {}).get("exec")}  # fmt: skip
    if not arms:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, block in arms.items():
        pooled: dict[str, list[int]] = {}
        for split in block["x1"].values():
            for bucket, c in split["buckets"].items():
                pooled.setdefault(bucket, [0, 0])
                pooled[bucket][0] += c["correct"]
                pooled[bucket][1] += c["n"]
        order = sorted(
            pooled, key=lambda n: float(n.lstrip("<=>")) + (0.5 if n.startswith(">") else 0)
        )
        ax.plot(order, [100 * pooled[b][0] / pooled[b][1] for b in order], "o-", color=colours.get(arm), label=arm)  # fmt: skip
    limit = result.get("data", {}).get("settings", {}).get("train_max_steps")
    ax.set_xlabel(f"executed steps (trained on <= {limit})")
    ax.set_ylabel("accuracy % (greedy, exact)")
    ax.set_title(f"{result['study']}: accuracy by difficulty")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / f"{prefix}exec_by_steps.png", dpi=110)
    plt.close(fig)
    written.append(f"{prefix}exec_by_steps.png")
    deeper = {a: b for a, b in arms.items() if len([k for k in b if k.startswith("x")]) > 1}
    if deeper:
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, block in deeper.items():
            names = sorted((k for k in block if k.startswith("x")), key=lambda k: int(k[1:]))
            hard = "test_hard" if "test_hard" in block["x1"] else next(iter(block["x1"]))
            ax.plot([int(n[1:]) for n in names], [100 * block[n][hard]["accuracy"]["mean"] for n in names], "o-", color=colours.get(arm), label=arm)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("inference H cycles / trained")
        ax.set_ylabel("test_hard accuracy % (mean over seeds)")
        ax.set_title(f"{result['study']}: test-time depth")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"{prefix}exec_test_time.png", dpi=110)
        plt.close(fig)
        written.append(f"{prefix}exec_test_time.png")
    return written


__all__ = ["exec_arm_block", "exec_data_record", "exec_markdown", "exec_plots"]
