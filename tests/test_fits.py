"""Scaling-law fits (hrm_codegen/study/fits.py) on synthetic runs drawn from known laws: the fit
and its bootstrap recover the law, the loop exponent phi, the frontier, crossovers and a held-out
budget. Bootstraps here refit from the 2 best grid starts (the default is 6) to stay fast."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from hrm_codegen.study.fits import (
    BootstrapResult,
    FlopsPerToken,
    LawFit,
    at_bound,
    bootstrap_fits,
    cost_from_records,
    crossover,
    crossover_ci,
    effective_params,
    fit_flops_per_token,
    fit_law,
    fit_loop_law,
    fit_loop_records,
    fit_records,
    frontier,
    frontier_band,
    holdout_prediction,
    tokens_per_param,
)

TRUE = LawFit(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)
SIZES = (1e6, 3e6, 1e7, 3e7, 1e8)
TOKENS = (1e8, 3e8, 1e9, 3e9, 1e10)
CHINCHILLA = FlopsPerToken(k=6.0, p=1.0)
fast_fit = partial(fit_records, n_starts=2)
fast_loop_fit = partial(fit_loop_records, n_starts=2)


def grid_runs(law: LawFit, noise: float, seeds: int = 1, rng_seed: int = 0, arm: str = "tf"):
    """One run per (size, tokens, seed), loss = law times lognormal noise."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for n in SIZES:
        for d in TOKENS:
            for seed in range(seeds):
                loss = float(law.predict(n, d)) * math.exp(rng.normal(0.0, noise))
                flops = 6.0 * n * d
                runs.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "params": n,
                        "tokens": d,
                        "flops": flops,
                        "loss": loss,
                    }
                )
    return runs


def loop_runs(phi: float, noise: float, rng_seed: int = 1):
    """A transformer arm (r=1) pooled with looped runs r in {2, 4, 8}: the design that
    identifies phi (Schwethelm et al.'s r sweep)."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for n in (2e6, 8e6, 3.2e7):
        for d in (1e8, 4e8, 1.6e9, 6.4e9):
            n_once = 0.2 * n
            for r in (1, 2, 4, 8):
                n_eff = n_once + r**phi * (n - n_once)
                loss = float(TRUE.predict(n_eff, d)) * math.exp(rng.normal(0.0, noise))
                runs.append(
                    {
                        "arm": f"loop{r}",
                        "seed": 0,
                        "params": n,
                        "params_once": n_once,
                        "params_shared": n - n_once,
                        "reuse": r,
                        "tokens": d,
                        "flops": 6.0 * r * n * d,
                        "loss": loss,
                    }
                )
    return runs


def test_fit_law_recovers_the_law_and_its_bootstrap_covers_it():
    # 0.3 % noise, two seeds per config. The data set is fixed (rng_seed=1): a 95 % interval may
    # miss the truth on any one data set (in a 20-set check it covered alpha, E, A in 18 of 20)
    runs = grid_runs(TRUE, noise=0.003, seeds=2, rng_seed=1)
    fit = fast_fit(runs)
    assert fit.alpha == pytest.approx(TRUE.alpha, abs=0.02)
    assert fit.beta == pytest.approx(TRUE.beta, abs=0.02)
    assert abs(fit.E - TRUE.E) < 0.1
    assert fit.n_points == len(runs) and fit.objective < 1e-4
    # the default (6 grid starts) agrees with the fast path
    full = fit_records(runs)
    assert full.alpha == pytest.approx(fit.alpha, abs=1e-6)

    boot = bootstrap_fits(runs, fast_fit, n_resamples=200, seed=0)
    assert boot.n_groups == len(SIZES) * len(TOKENS)  # the two seeds of a config are one group
    assert boot.n_failed == 0
    for name in ("alpha", "beta", "E", "A", "B"):
        lo, hi = boot.ci(name)
        true = getattr(TRUE, name)
        assert lo <= true <= hi, (name, lo, hi, true)
    lo, hi = boot.ci("alpha")
    assert hi - lo < 0.15 and not lo <= 0.5 <= hi  # an interval, not everything
    assert boot.ci("alpha", 0.5)[1] - boot.ci("alpha", 0.5)[0] < hi - lo


def test_noise_free_fit_is_exact():
    runs = grid_runs(TRUE, noise=0.0)
    fit = fit_records(runs)
    for name in ("E", "A", "alpha", "B", "beta"):
        assert getattr(fit, name) == pytest.approx(getattr(TRUE, name), rel=1e-3), name


def test_a_parameter_the_runs_cannot_determine_is_flagged_at_its_bound():
    # Recovered parameters sit inside their bounds; a law with no irreducible loss (E = 0)
    # drives the fitted E onto its lower bound, and the report must say so.
    fit = fit_records(grid_runs(TRUE, noise=0.0))
    assert not any(at_bound(name, getattr(fit, name)) for name in ("E", "alpha", "beta"))
    no_floor = LawFit(E=0.0, A=400.0, alpha=0.34, B=410.0, beta=0.28)
    floorless = fit_records(grid_runs(no_floor, noise=0.0))
    assert at_bound("E", floorless.E)
    assert at_bound("alpha", 3.0) and at_bound("alpha", 0.0) and not at_bound("alpha", 1.5)
    assert at_bound("phi", 1.5) and not at_bound("phi", 0.46)
    assert not at_bound("A", 0.0) and not at_bound("beta", math.nan)


def test_bootstrap_resamples_whole_configurations():
    runs = grid_runs(TRUE, noise=0.01, seeds=3)
    seen: list[list[tuple[float, float, int]]] = []

    def spy(sample, **_):
        seen.append([(r["params"], r["tokens"], r["seed"]) for r in sample])
        return TRUE

    def configs_whole(sample) -> bool:
        by_config: dict[tuple[float, float], list[int]] = {}
        for n, d, s in sample:
            by_config.setdefault((n, d), []).append(s)
        return all(sorted(s) == sorted([0, 1, 2] * (len(s) // 3)) for s in by_config.values())

    bootstrap_fits(runs, spy, n_resamples=20, seed=3)
    assert len(seen) == 21 and all(configs_whole(sample) for sample in seen)
    seen.clear()
    bootstrap_fits(runs, spy, n_resamples=20, seed=3, pair_by=None)
    assert not all(configs_whole(sample) for sample in seen[1:])  # single runs split configs


def test_bootstrap_derived_quantities_and_failed_draws():
    runs = grid_runs(TRUE, noise=0.003)
    ratio = {"D_per_N_at_1e20": lambda f: float(tokens_per_param(f, CHINCHILLA, 1e20))}
    boot = bootstrap_fits(runs, fast_fit, n_resamples=20, seed=1, derived=ratio)
    lo, hi = boot.ci("D_per_N_at_1e20")
    assert lo <= boot.point_values["D_per_N_at_1e20"] <= hi
    assert set(boot.summary()) == {"E", "A", "alpha", "B", "beta", "D_per_N_at_1e20"}

    one_size = [r for r in runs if r["params"] == SIZES[0]] + [runs[-1]]
    weak = bootstrap_fits(one_size, fast_fit, n_resamples=30, seed=0, pair_by=None)
    assert weak.n_failed > 0  # draws without the second size cannot be fitted ...
    assert np.isnan(weak.draws["alpha"]).sum() == weak.n_failed  # ... and are NaN, not dropped


def test_bootstrap_on_forked_workers_gives_the_same_draws_in_the_same_order():
    runs = grid_runs(TRUE, noise=0.01)
    one = bootstrap_fits(runs, fast_fit, n_resamples=12, seed=5, pair_by=None)
    two = bootstrap_fits(runs, fast_fit, n_resamples=12, seed=5, pair_by=None, workers=2)
    assert len(two.fits) == 12
    for name in ("E", "alpha", "beta"):
        np.testing.assert_array_equal(one.draws[name], two.draws[name])
    assert len(set(one.draws["alpha"].tolist())) > 1  # the draws differ from each other


def test_loop_law_recovers_phi():
    runs = loop_runs(phi=0.46, noise=0.003)
    fit = fast_loop_fit(runs)
    assert fit.phi == pytest.approx(0.46, abs=0.08)
    assert fit.alpha == pytest.approx(TRUE.alpha, abs=0.05)
    boot = bootstrap_fits(runs, fast_loop_fit, n_resamples=60, seed=0, pair_by=None)
    lo, hi = boot.ci("phi")
    assert lo <= 0.46 <= hi and hi - lo < 0.4, (lo, hi)
    assert not lo <= 1.0 <= hi  # the loop is measurably worth less than unique blocks


def test_loop_law_exact_and_not_identified():
    runs = loop_runs(phi=0.46, noise=0.0)
    fit = fit_loop_records(runs)
    assert fit.phi == pytest.approx(0.46, abs=1e-3)
    assert np.allclose(fit.predict_records(runs), [r["loss"] for r in runs], rtol=1e-4)
    only_r4 = [r for r in runs if r["reuse"] == 4]
    with pytest.raises(ValueError, match="not identified"):
        fit_loop_records(only_r4)
    # two shared modules with their own reuse (HRM: H applied 2 times, L applied 2*4 times)
    n_eff = effective_params([10.0], [[100.0, 50.0]], [[2.0, 8.0]], 0.5)
    assert n_eff[0] == pytest.approx(10 + 100 * 2**0.5 + 50 * 8**0.5)
    fit2, phi = fit_loop_law(
        [r["params_once"] for r in runs],
        [[r["params_shared"] / 2] * 2 for r in runs],
        [[r["reuse"]] * 2 for r in runs],
        [r["tokens"] for r in runs],
        [r["loss"] for r in runs],
    )
    assert phi == pytest.approx(0.46, abs=1e-3) and fit2.phi == phi


def test_fit_law_rejects_bad_input():
    with pytest.raises(ValueError):
        fit_law([1e6, 1e6], [1e9, 2e9], [2.0, 1.9])  # one distinct N
    with pytest.raises(ValueError):
        fit_law([1e6, 2e6], [1e9, 2e9], [2.0, -1.0])
    with pytest.raises(ValueError):
        fit_law([1e6, 2e6, 3e6], [1e9, 2e9], [2.0, 1.9])


def brute_force(law: LawFit, cost, c: float) -> tuple[float, float]:
    log_n = np.linspace(math.log(1e2), math.log(1e16), 400_001)
    n = np.exp(log_n)
    loss = law.predict(n, c / cost(n))
    i = int(np.argmin(loss))
    return float(n[i]), float(loss[i])


@pytest.mark.parametrize(
    "cost",
    [CHINCHILLA, lambda n: 6.0 * n, lambda n: 6.0 * n + 2e4 * np.sqrt(n)],
    ids=["closed-form", "numeric", "numeric-attention-like"],
)
def test_frontier_agrees_with_brute_force(cost):
    budgets = np.array([1e16, 1e19, 1e22])
    n_opt, d_opt, l_opt = frontier(TRUE, cost, budgets)
    assert n_opt.shape == budgets.shape
    assert np.allclose(d_opt * cost(n_opt), budgets, rtol=1e-9)  # C = D * FLOPs per token
    for c, n, loss in zip(budgets, n_opt, l_opt):
        n_bf, l_bf = brute_force(TRUE, cost, c)
        assert n == pytest.approx(n_bf, rel=2e-4)
        assert loss == pytest.approx(l_bf, rel=1e-9)
        assert loss <= l_bf * (1 + 1e-12)
    scalar = frontier(TRUE, cost, 1e19)
    assert isinstance(scalar[0], float) and scalar[0] == pytest.approx(n_opt[1], rel=1e-6)


def test_tokens_per_param_is_constant_when_alpha_equals_beta():
    budgets = np.logspace(15, 24, 10)
    equal = LawFit(E=1.7, A=400.0, alpha=0.3, B=410.0, beta=0.3)
    ratio = tokens_per_param(equal, CHINCHILLA, budgets)
    assert np.ptp(ratio) / ratio.mean() < 1e-6
    # N_opt = (alpha A / (beta B))^(1/(alpha+beta)) (C/6)^(1/2), D_opt = C / (6 N_opt)
    n0 = (400.0 / 410.0) ** (1 / 0.6)
    assert ratio[0] == pytest.approx(1 / n0**2, rel=1e-6)
    unequal = tokens_per_param(TRUE, CHINCHILLA, budgets)
    assert unequal[-1] / unequal[0] > 1.5  # beta < alpha: tokens grow faster than params


def test_fit_flops_per_token():
    n = np.array([1e6, 1e7, 1e8])
    cost = fit_flops_per_token(n, 7.0 * n**1.05)
    assert cost.k == pytest.approx(7.0, rel=1e-9) and cost.p == pytest.approx(1.05, rel=1e-9)
    assert fit_flops_per_token([1e6], [6e6]).p == 1.0
    runs = grid_runs(TRUE, noise=0.0)
    fitted = cost_from_records(runs)
    assert fitted.k == pytest.approx(6.0) and fitted.p == pytest.approx(1.0)


def crossing_pair(c_star: float) -> tuple[LawFit, LawFit]:
    """b = a with A, B halved and E raised so the frontiers cross at c_star (same 6N cost).

    For cost 6N the frontier is L*(C) = E + G C^-gamma; halving A and B halves G, so
    L*_b - L*_a = (E_b - E_a) - G/2 C^-gamma, zero at c_star when E_b = E_a + G/2 c_star^-gamma."""
    a = TRUE
    gamma = a.alpha * a.beta / (a.alpha + a.beta)
    n_star = (a.alpha * a.A / (a.beta * a.B)) ** (1 / (a.alpha + a.beta)) * (c_star / 6) ** (
        a.beta / (a.alpha + a.beta)
    )
    excess = a.A * n_star**-a.alpha + a.B * (c_star / (6 * n_star)) ** -a.beta
    g = excess * c_star**gamma
    b = LawFit(E=a.E + 0.5 * g * c_star**-gamma, A=a.A / 2, alpha=a.alpha, B=a.B / 2, beta=a.beta)
    return a, b


def test_crossover_at_a_known_compute():
    c_star = 3e19
    a, b = crossing_pair(c_star)
    found = crossover(a, CHINCHILLA, b, CHINCHILLA, (1e15, 1e23))
    assert found == pytest.approx(c_star, rel=0.05)
    assert crossover(b, CHINCHILLA, a, CHINCHILLA, (1e15, 1e23)) == pytest.approx(found)
    assert crossover(a, CHINCHILLA, b, CHINCHILLA, (1e20, 1e23)) is None  # out of range
    # b (smaller A, B) is better below c_star, a (lower E) above
    below, above = (
        frontier(a, CHINCHILLA, [1e17, 1e22])[2],
        frontier(b, CHINCHILLA, [1e17, 1e22])[2],
    )
    assert below[0] > above[0] and below[1] < above[1]


def test_parallel_laws_never_cross():
    worse = LawFit(E=1.8, A=TRUE.A, alpha=TRUE.alpha, B=TRUE.B, beta=TRUE.beta)
    assert crossover(TRUE, CHINCHILLA, worse, CHINCHILLA, (1e12, 1e26)) is None
    # a recurrent arm paying 4x FLOPs per token for the same law never catches up either
    assert crossover(TRUE, CHINCHILLA, TRUE, FlopsPerToken(24.0, 1.0), (1e12, 1e26)) is None


def manual_boot(fits: list[LawFit]) -> BootstrapResult:
    draws = {k: np.asarray([f.values()[k] for f in fits]) for k in fits[0].values()}
    return BootstrapResult(fits[0], tuple(fits), draws, fits[0].values(), len(fits), None, 0)


def test_crossover_ci_says_no_crossover_within_decades():
    rng = np.random.default_rng(0)
    a = [TRUE] * 200
    b = [LawFit(1.7 + g, 400.0, 0.34, 410.0, 0.28) for g in np.abs(rng.normal(0.02, 0.01, 200))]
    out = crossover_ci(manual_boot(a), manual_boot(b), CHINCHILLA, CHINCHILLA, [1e16, 1e19])
    assert out["no_crossover_within_decades"] and out["frac_no_crossover"] == 1.0
    assert out["range"] == (1e16, pytest.approx(1e20)) and out["a_lower_at_top"] == 1.0
    assert out["ci"] == (math.inf, math.inf) and "no crossover within 1 decades" in out["statement"]
    assert len(out["draws"]) == 200 and all(math.isinf(d) for d in out["draws"])

    # half the draws cross inside the range: no such statement can be made
    _, crossing = crossing_pair(1e18)
    mixed = b[:100] + [crossing] * 100
    out = crossover_ci(manual_boot(a), manual_boot(mixed), CHINCHILLA, CHINCHILLA, [1e16, 1e19])
    assert not out["no_crossover_within_decades"]
    assert out["frac_no_crossover"] == pytest.approx(0.5)
    assert out["ci"][0] == pytest.approx(1e18, rel=1e-3) and out["ci"][1] == math.inf


def test_frontier_band_brackets_the_frontier_of_the_draws():
    c = np.geomspace(1e16, 1e20, 7)
    same = frontier_band(manual_boot([TRUE] * 20), CHINCHILLA, c)
    assert same["n_draws"] == 20 and same["C"] == pytest.approx(list(c))
    assert same["lo"] == pytest.approx(same["L"]) and same["hi"] == pytest.approx(same["L"])

    # draws whose irreducible loss spreads by +-0.05: the band is about that wide everywhere
    shifted = [LawFit(1.7 + g, 400.0, 0.34, 410.0, 0.28) for g in np.linspace(-0.05, 0.05, 41)]
    band = frontier_band(manual_boot([TRUE, *shifted]), CHINCHILLA, c)
    truth = np.asarray(frontier(TRUE, CHINCHILLA, c)[2])
    assert np.all(np.asarray(band["lo"]) < truth) and np.all(truth < np.asarray(band["hi"]))
    width = np.asarray(band["hi"]) - np.asarray(band["lo"])
    assert width == pytest.approx(np.full(7, 0.095), abs=0.01)


def test_crossover_ci_from_fitted_arms():
    c_star = 1e17
    law_a, law_b = crossing_pair(c_star)
    runs_a = grid_runs(law_a, noise=0.002, rng_seed=1, arm="a")
    runs_b = grid_runs(law_b, noise=0.002, rng_seed=2, arm="b")
    boot_a = bootstrap_fits(runs_a, fast_fit, n_resamples=40, seed=5)
    boot_b = bootstrap_fits(runs_b, fast_fit, n_resamples=40, seed=5)
    budgets = [r["flops"] for r in runs_a]
    out = crossover_ci(boot_a, boot_b, CHINCHILLA, CHINCHILLA, budgets, decades=2)
    assert out["n_draws"] == 40 and not out["no_crossover_within_decades"]
    assert out["point"] == pytest.approx(c_star, rel=0.3)
    assert out["ci"][0] <= c_star <= out["ci"][1], out


def test_holdout_predicts_the_largest_budget():
    runs = grid_runs(TRUE, noise=0.0)
    out = holdout_prediction(runs, fast_fit, n_resamples=10)
    assert out["budget_key"] == "flops" and out["n_held"] == 1 and out["n_train"] == len(runs) - 1
    (run,) = out["runs"]
    assert run["params"] == max(SIZES) and run["tokens"] == max(TOKENS)
    assert abs(run["rel_error"]) < 0.01 and out["max_abs_rel_error"] < 0.01

    # noisy runs: a prediction interval as wide as the noise (0.4 %) and the parameter spread
    noisy = grid_runs(TRUE, noise=0.004, seeds=2, rng_seed=4)
    out = holdout_prediction(noisy, fast_fit, n_resamples=40)
    assert out["n_held"] == 2 and out["max_abs_rel_error"] < 0.02
    for run in out["runs"]:
        assert run["lo"] < run["predicted"] < run["hi"] and 0.005 < run["hi"] / run["lo"] - 1 < 0.05
        assert run["inside"] == (run["lo"] <= run["observed"] <= run["hi"])

    # a law family that cannot describe the data fails the check: losses with E drifting in D
    drift = [{**r, "loss": r["loss"] * (r["tokens"] / 1e8) ** 0.03} for r in runs]
    out = holdout_prediction(drift, fast_fit, n_resamples=5)
    assert out["max_abs_rel_error"] > 0.01 or not out["all_inside"]
