"""A scaling study's results: the grid's points, per-arm laws with bootstrap CIs, the loop
efficiency phi, the crossover of two arms' frontiers, a held-out check, and the report + plots.

Points: for each (arm, size, budget) the learning rate with the lowest final `select_metric` on
the first seed (every seed at that lr enters the fits, paired in the bootstrap). Laws are fitted
twice, with N and C counting every parameter and with them leaving out the embedding and the LM
head (at 1-3M parameters the head dominates; the choice moves the exponents, Porian et al. 2024),
and both are reported.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hrm_codegen.study.records import run_facts, trainer_state
from hrm_codegen.study.runs import model_facts
from hrm_codegen.study.scaling_spec import ScalingKey, ScalingSpec, best_lr

CONVENTIONS = {
    "all": ("params", "flops"),  # every parameter and FLOP
    "no_embed": ("params_body", "flops_body"),  # without embedding and LM head
}


class ScalingState(Protocol):
    """What the report reads of a scaling study: `scaling.ScalingRunner` is one. Named by shape,
    not imported: the runner writes its report at the end of `run`, so the report sits below."""

    spec: ScalingSpec
    out: Path
    tokenizer_dir: Path | str | None
    corpus_dir: Path | None

    def log(self, message: str) -> None: ...

    def long_keys(self) -> list[ScalingKey]: ...

    def branch_keys(self) -> list[ScalingKey]: ...

    def status(self, key: ScalingKey) -> str: ...

    def source(self, key: ScalingKey) -> Path: ...

    def final(self, key: ScalingKey) -> float: ...


def run_row(runner: ScalingState, key: ScalingKey) -> dict[str, Any]:
    """One run of the grid as the report sees it (from its folder here or its record)."""
    folder = runner.source(key)
    status = runner.status(key)
    row: dict[str, Any] = {
        "arm": key.arm_name,
        "size": key.size,
        "lr": key.lr,
        "seed": key.seed,
        "budget": key.budget if key.budget is not None else runner.spec.budgets[-1],
        "stage": key.stage,
        "status": status,
        "loss": runner.final(key),
    }
    state = trainer_state(folder)
    if state:
        row.update(
            steps=state["step"],
            tokens=float(state["tokens_seen"]),
            flops=float(state.get("flops_seen", math.nan)),
            flops_body=float(state.get("flops_no_embed_seen", math.nan)),
        )
        row.update(run_facts(folder, model_facts))
    return row


def select_points(rows: list[dict[str, Any]], first_seed: int) -> list[dict[str, Any]]:
    """Per (arm, size, budget): every seed's run at the lr that is best on the first seed."""
    cells: dict[tuple[str, str, float], list[tuple[float, float]]] = {}
    for row in rows:
        if row["seed"] == first_seed and math.isfinite(row["loss"]):
            cells.setdefault((row["arm"], row["size"], row["budget"]), []).append(
                (row["loss"], row["lr"])
            )
    best = {cell: best_lr(scores) for cell, scores in cells.items()}
    return [
        r
        for r in rows
        if best.get((r["arm"], r["size"], r["budget"])) == r["lr"]
        and math.isfinite(r["loss"])
        and "tokens" in r
    ]


def _records(points: list[dict[str, Any]], convention: str) -> list[dict[str, Any]]:
    """Points as fit records in one counting convention (N, C)."""
    n_key, c_key = CONVENTIONS[convention]
    out = []
    for p in points:
        if not math.isfinite(p.get(c_key, math.nan)):
            continue
        record = {**p, "params": p[n_key], "flops": p[c_key]}
        if "params_shared" not in p or convention != "all":
            record.pop("params_shared", None)
            record.pop("params_once", None)
            record.pop("reuse", None)
        out.append(record)
    return out


def fit_arms(points: list[dict[str, Any]], spec_fits: dict[str, Any]) -> dict[str, Any]:
    """Per convention and arm: the law with bootstrap CIs, phi (recurrent arms), the frontier's
    tokens per parameter; the crossover of the compared arms; the held-out prediction."""
    import hrm_codegen.study.fits as fits  # scipy: only when fitting

    n_boot = int(spec_fits.get("bootstrap", 1000))
    n_holdout = int(spec_fits.get("holdout_resamples", 200))
    compare = list(spec_fits.get("compare") or [])
    decades = float(spec_fits.get("decades", 2.0))
    workers = int(spec_fits.get("workers", 1))
    out: dict[str, Any] = {}
    for convention in CONVENTIONS:
        records = _records(points, convention)
        arms = sorted({r["arm"] for r in records})
        block: dict[str, Any] = {"arms": {}}
        boots: dict[str, Any] = {}
        costs: dict[str, Any] = {}
        # one C grid for every arm's frontier band: the data's budgets out to `decades` beyond
        c_all = [r["flops"] for r in records]
        c_grid = np.geomspace(min(c_all), max(c_all) * 10.0**decades, 40) if c_all else np.array([])
        for arm in arms:
            mine = [r for r in records if r["arm"] == arm]
            entry: dict[str, Any] = {"points": len(mine)}
            try:
                label = f"{convention} {arm}"
                boot = fits.bootstrap_fits(
                    mine,
                    fits.fit_records,
                    n_resamples=n_boot,
                    progress=f"fit {label}",
                    workers=workers,
                )
                cost = fits.cost_from_records(mine)
                c_top = max(r["flops"] for r in mine)
                entry["law"] = boot.summary()
                entry["flops_per_token"] = {"k": cost.k, "p": cost.p}
                entry["tokens_per_param_at_max_budget"] = float(
                    fits.tokens_per_param(boot.point, cost, c_top)
                )
                entry["failed_draws"] = boot.n_failed
                entry["frontier"] = fits.frontier_band(boot, cost, c_grid)
                boots[arm], costs[arm] = boot, cost
                try:  # needs runs below the largest budget: its own error, the law stands
                    holdout = fits.holdout_prediction(
                        mine,
                        fits.fit_records,
                        budget_key="budget",
                        n_resamples=n_holdout,
                        progress=f"held-out {label}",
                        workers=workers,
                    )
                    entry["holdout"] = {k: v for k, v in holdout.items() if k != "fit"}
                except fits._FIT_ERRORS as error:
                    entry["holdout_error"] = f"{type(error).__name__}: {error}"
                baseline = spec_fits.get("loop_baseline")
                recurrent = any("params_shared" in r for r in mine)
                # phi in the every-parameter convention only: the embedding and head are the
                # parameters applied once per token (N_once), which the other convention drops
                if recurrent and baseline in arms and convention == "all":
                    # phi is identifiable against runs with r = 1 (every run of one arm has
                    # the same reuse): pooled with the baseline, it measures the recurrent
                    # arm's parameter efficiency relative to it (fits.fit_loop_law)
                    pooled = mine + [r for r in records if r["arm"] == baseline]
                    try:
                        loop = fits.bootstrap_fits(
                            pooled,
                            fits.fit_loop_records,
                            n_resamples=n_boot,
                            progress=f"phi {label} with {baseline}",
                            workers=workers,
                        )
                        entry["loop_law"] = {**loop.summary(), "baseline": baseline}
                    except fits._FIT_ERRORS as error:
                        entry["loop_error"] = f"{type(error).__name__}: {error}"
            except fits._FIT_ERRORS as error:  # too few or degenerate points
                entry["error"] = f"{type(error).__name__}: {error}"
            block["arms"][arm] = entry
        if len(compare) == 2 and all(a in boots for a in compare):
            a, b = compare
            c_data = [r["flops"] for r in records if r["arm"] in compare]
            result = fits.crossover_ci(
                boots[a], boots[b], costs[a], costs[b], c_data, decades=decades
            )
            block["crossover"] = {"arms": compare, **result}
        out[convention] = block
    return out


def fits_key(points: list[dict[str, Any]], spec_fits: dict[str, Any]) -> str:
    """sha256 of what the fits are a function of: the selected points and the fit settings
    (the bootstrap is seeded, and forked workers draw the same resamples as one process)."""
    text = json.dumps({"points": points, "fits": spec_fits}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def reuse_fits(
    previous: Path, points: list[dict[str, Any]], spec_fits: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """(key, the fits of `previous` results.json when made from the same points and settings,
    else None). A report rebuilt from unchanged records then takes seconds, not the hours of
    bootstrap refits; anything changed refits everything."""
    key = fits_key(points, spec_fits)
    try:
        old = json.loads(previous.read_text())
    except (OSError, ValueError):
        return key, None
    return key, old["fits"] if old.get("fits_key") == key and "fits" in old else None


def collect(runner: ScalingState) -> dict[str, Any]:
    """results.json's content."""
    from hrm_codegen.study.report import _machine

    spec = runner.spec
    keys = runner.long_keys() + runner.branch_keys()
    rows = [run_row(runner, k) for k in keys]
    points = select_points(rows, spec.seeds[0])
    sessions_file = runner.out / "sessions.json"
    key, fits = reuse_fits(runner.out / "results.json", points, dict(spec.fits))
    if fits is None:
        runner.log(f"fitting the laws ({key[:12]}): the points or the fit settings changed")
        fits = fit_arms(points, {"workers": spec.jobs, **spec.fits})  # refits on the jobs
    return {
        "study": spec.name,
        "kind": "scaling",
        "description": spec.description,
        "protocol": {
            "arms": {k: list(v) for k, v in spec.arms.items()},
            "sizes": {k: list(v) for k, v in spec.sizes.items()},
            "budgets": list(spec.budgets),
            "seeds": list(spec.seeds),
            "lr_sweep": list(spec.lr_sweep),
            "lr_edge_extension": spec.lr_edge_extension,
            "lr_factor": spec.lr_factor,
            "schedule": {
                "name": "wsd",
                "cooldown_fraction": spec.cooldown_fraction,
                "cooldown_shape": spec.cooldown_shape,
            },
            "select_metric": spec.select_metric,
            "common": list(spec.common),
            "overrides": list(spec.overrides),
            "estimate": spec.estimate(),
        },
        "data": _data(runner),
        "runs": rows,
        "points": points,
        "fits_key": key,
        "fits": fits,
        "sessions": json.loads(sessions_file.read_text()) if sessions_file.is_file() else [],
        "machine": _machine(),
    }


def _data(runner: ScalingState) -> dict[str, Any]:
    from hrm_codegen.data.corpus import read_manifest
    from hrm_codegen.tokenization import load_tokenizer, tokenizer_fingerprint

    if runner.corpus_dir is None or runner.tokenizer_dir is None:
        return {}
    return {
        "corpus_fingerprint": read_manifest(runner.corpus_dir)["fingerprint"],
        "tokenizer_fingerprint": tokenizer_fingerprint(load_tokenizer(runner.tokenizer_dir)),
    }


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _ci(stats: dict[str, float] | None, name: str = "") -> str:
    """`estimate [lo, hi]`, the estimate marked † when it sits on its fit bound."""
    if not stats:
        return "-"
    from hrm_codegen.study.fits import at_bound  # scipy: only where a report is rendered

    mark = " †" if name and at_bound(name, float(stats["estimate"])) else ""
    return f"{_num(stats['estimate'])}{mark} [{_num(stats['lo'])}, {_num(stats['hi'])}]"


def _holdout_cell(held: dict[str, Any]) -> str:
    """The largest relative error of the held-out prediction, and whether every held-out run
    fell inside its 95 % bootstrap prediction interval."""
    if not held or not held.get("runs"):
        return "-"
    error = f"{_num(100 * held.get('max_abs_rel_error', math.nan), 2)} %"
    inside = sum(bool(run.get("inside")) for run in held["runs"])
    return f"{error} ({inside}/{len(held['runs'])} inside the 95 % interval)"


def render_markdown(result: dict[str, Any], command: str, plots: list[str]) -> str:
    p = result["protocol"]
    total = sum(s["seconds"] for s in result["sessions"])
    lines = [f"# Scaling study `{result['study']}`", "", result["description"].strip(), ""]
    lines += ["Reproduce (resumes from the committed records, then rewrites this page):", ""]
    lines += ["```bash", command, "```", ""]
    m = result["machine"]
    lines += [
        f"Machine: {m.get('cpu_model') or m.get('gpu') or m['processor']}, {m['cpus']} CPUs, "
        f"torch {m['torch']}. Wall time of the invocations that ran to their end: "
        f"{total / 60:.1f} min over {len(result['sessions'])} (one stopped early, e.g. at a "
        "session's end, is not counted).",
        "",
        "## Protocol (fixed before any run)",
        "",
        "- Arms: " + "; ".join(f"`{a}`: `{' '.join(o)}`" for a, o in p["arms"].items()),
        "- Sizes: " + "; ".join(f"`{s}`: `{' '.join(o)}`" for s, o in p["sizes"].items()),
        f"- Budgets (training FLOPs): {', '.join(_num(b) for b in p['budgets'])}; schedule "
        f"warmup-stable-decay, cooldown {p['schedule']['cooldown_fraction']:g} of the steps "
        f"({p['schedule']['cooldown_shape']}); each smaller budget branches from the long run's "
        "checkpoint at its cooldown start.",
        f"- Learning rates {p['lr_sweep']} per arm and size; when the best at the largest budget "
        f"is at an edge, the sweep extends by x{p['lr_factor']:.3g} that way, at most "
        f"{p['lr_edge_extension']} time(s). Selection per (arm, size, budget) by the lowest final "
        f"`{p['select_metric']}` on seed {p['seeds'][0]}.",
        f"- Shared settings: `{' '.join(p['common'] + p['overrides'])}`",
        "",
    ]
    data = result.get("data") or {}
    if data:
        lines += [
            f"Corpus fingerprint `{data['corpus_fingerprint']}`, tokenizer fingerprint "
            f"`{data['tokenizer_fingerprint']}`.",
            "",
        ]
    for convention, title in (
        ("all", "every parameter"),
        ("no_embed", "without embedding and head"),
    ):
        block = result["fits"].get(convention, {})
        lines += [
            f"## Fits, N and C counting {title}",
            "",
            "| arm | points | E | alpha | beta | phi (loop law) | D/N at the largest budget | "
            "held-out error |",
            "|---|---:|---|---|---|---|---:|---:|",
        ]
        for arm, entry in block.get("arms", {}).items():
            if "error" in entry:
                lines.append(
                    f"| {arm} | {entry['points']} | fit failed: {entry['error']} | | | | | |"
                )
                continue
            law = entry["law"]
            phi = (entry.get("loop_law") or {}).get("phi")
            held = entry.get("holdout") or {}
            lines.append(
                f"| {arm} | {entry['points']} | {_ci(law.get('E'), 'E')} | "
                f"{_ci(law.get('alpha'), 'alpha')} | {_ci(law.get('beta'), 'beta')} | "
                f"{_ci(phi, 'phi')} | {_num(entry.get('tokens_per_param_at_max_budget'))} | "
                f"{_holdout_cell(held)} |"
            )
        cross = block.get("crossover")
        if cross:
            lines += [
                "",
                f"Crossover of `{cross['arms'][0]}` and `{cross['arms'][1]}`: "
                f"{cross['statement']}.",
            ]
        lines.append("")
    lines += [
        "† the estimate sits on the fit's bound (E >= e^-20, alpha and beta in [0, 3], phi in "
        "[0, 1.5]): the runs do not determine it, and the law's extrapolations lean on the bound.",
        "The held-out column fits every budget but the largest and predicts the largest: the "
        "largest relative error, and how many of those runs fell inside the prediction's 95 % "
        "bootstrap interval.",
        "",
    ]
    lines += [
        "## Every run",
        "",
        "| arm | size | budget | lr | seed | status | steps | tokens | val/bpb |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['arm']} | {r['size']} | {_num(r['budget'])} | {r['lr']:g} | {r['seed']} | "
            f"{r['status']} | {r.get('steps', '-')} | {_num(r.get('tokens'))} | "
            f"{_num(r['loss'], 4)} |"
        )
    lines += ["", *(f"![{name}]({name})" for name in plots), ""]
    lines.append(
        "Every number here is in the study's `results.json`: beside `report.md` in the study "
        "folder, and in the folder of the same name as this page when published."
    )
    return "\n".join(lines) + "\n"


def write_plots(result: dict[str, Any], folder: Path, prefix: str) -> list[str]:
    """isoFLOP curves per arm, and loss against tokens per parameter; PNG names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    points = [r for r in result["runs"] if math.isfinite(r["loss"]) and "params" in r]
    arms = sorted({r["arm"] for r in points})
    if not arms:
        return names
    fig, axes = plt.subplots(1, len(arms), figsize=(4 * len(arms), 3.4), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        mine = [r for r in result["points"] if r["arm"] == arm]
        for budget in sorted({r["budget"] for r in mine}):
            row = sorted((r["params"], r["loss"]) for r in mine if r["budget"] == budget)
            ax.plot([x for x, _ in row], [y for _, y in row], marker="o", label=f"{budget:.2g}")
        ax.set_xscale("log")
        ax.set_title(arm)
        ax.set_xlabel("parameters")
        ax.set_ylabel("val/bpb")
        ax.legend(title="FLOPs", fontsize=7)
    fig.tight_layout()
    name = f"{prefix}isoflop.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    names.append(name)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arm in arms:
        mine = [r for r in result["points"] if r["arm"] == arm]
        ax.scatter([r["tokens"] / r["params"] for r in mine], [r["loss"] for r in mine], label=arm)
    ax.set_xscale("log")
    ax.set_xlabel("tokens per parameter")
    ax.set_ylabel("val/bpb")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"{prefix}tokens_per_param.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    names.append(name)
    names += _frontier_plots(result, folder, prefix, plt)
    return names


def _frontier_plots(result: dict[str, Any], folder: Path, prefix: str, plt: Any) -> list[str]:
    """The frontiers L*(C) with their bootstrap bands on one chart (a panel per convention), and
    the bootstrap distribution of the compared arms' crossover."""
    names = []
    blocks = [(c, result["fits"].get(c) or {}) for c in CONVENTIONS]
    if not any("frontier" in e for _, b in blocks for e in b.get("arms", {}).values()):
        return names
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.5 * len(blocks), 3.8), squeeze=False)
    for ax, (convention, block) in zip(axes[0], blocks):
        for arm, entry in block.get("arms", {}).items():
            band = entry.get("frontier")
            if not band:
                continue
            (line,) = ax.plot(band["C"], band["L"], label=arm)
            ax.fill_between(band["C"], band["lo"], band["hi"], color=line.get_color(), alpha=0.2)
        mine = [r for r in result["points"] if math.isfinite(r["loss"])]
        c_key = CONVENTIONS[convention][1]
        if mine and all(c_key in r for r in mine):
            ax.scatter([r[c_key] for r in mine], [r["loss"] for r in mine], s=6, c="0.5")
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs" + ("" if convention == "all" else " (no embedding/head)"))
        ax.set_ylabel("frontier val/bpb (95% band)")
        ax.set_title(f"compute-optimal frontier, N counting {convention}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"{prefix}frontiers.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    names.append(name)

    crossings = [(c, b["crossover"]) for c, b in blocks if b.get("crossover")]
    if crossings:
        fig, axes = plt.subplots(
            1, len(crossings), figsize=(5 * len(crossings), 3.4), squeeze=False
        )
        for ax, (convention, cross) in zip(axes[0], crossings):
            draws = np.asarray(cross.get("draws") or [], dtype=float)
            finite = draws[np.isfinite(draws)]
            if finite.size:
                ax.hist(np.log10(finite), bins=30)
            lo, hi = cross["range"]
            ax.axvspan(math.log10(lo), math.log10(hi), color="0.9", zorder=0)
            ax.set_xlabel("log10 crossover FLOPs (shaded: search range)")
            ax.set_ylabel("bootstrap draws")
            a, b = cross["arms"]
            none = draws.size - finite.size
            ax.set_title(f"{a} vs {b} ({convention}): {none}/{draws.size} draws never cross")
        fig.tight_layout()
        name = f"{prefix}crossover.png"
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_scaling_report(
    runner: ScalingState, publish_dir: str | Path | None = None, command: str = ""
) -> Path:
    """results.json, report.md and plots in the study folder (and `<publish_dir>/<name>.md`)."""
    from hrm_codegen.study.report import write_pages

    return write_pages(runner, collect(runner), command, write_plots, render_markdown, publish_dir)


__all__ = ["collect", "fit_arms", "fits_key", "reuse_fits", "select_points", "write_scaling_report"]
