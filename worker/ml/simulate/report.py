"""What a simulation reports: Table 1 with the controls, the curves, comparisons with intervals, the
Corollary 2.1 diagnostic, and their plots (results.json, results.md, PNGs)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.ml.simulate.comparisons import Comparison, compare, describe
from worker.ml.simulate.config import AQPL_STRATEGY, METRIC_NAMES, SimulationConfig
from worker.ml.simulate.diagnostics import PREDICTED_DIRECTION
from worker.ml.simulate.loop import ImageScores, RunOutcome, json_ready

METHOD_LABELS = {
    "standard": "Standard",
    "gnt": "GNT",
    "cat": "CAT",
    "gnt-ft": "GNT-FT",
    "cat-ft": "CAT-FT",
    "aqpl-gnt": "AQPL-GNT",
    "aqpl-cat": "AQPL-CAT",
}
STRATEGY_LABELS = {
    "aqpl": "AQPL",
    "random": "Random",
    "clean_uncertainty": "Clean uncertainty",
    "noise_uncertainty": "Noise uncertainty",
}
# Marker and line style per strategy, so the plots read without colour.
STRATEGY_STYLES = {
    "aqpl": ("o", "-"),
    "random": ("s", "--"),
    "clean_uncertainty": ("^", ":"),
    "noise_uncertainty": ("D", "-."),
}
METRIC_TITLES = {"clean": "Clean", "gaussian": "Gaussian noise", "corruptions": "Common corruptions"}
METRIC_WORDS = {"clean": "clean accuracy", "gaussian": "Gaussian noise", "corruptions": "corruptions"}
# Method pairs whose difference answers a question: what the answers add over the same fine-tuning,
# and (confounded by that fine-tuning) over the base method the paper's table compares with.
METHOD_CONTRASTS = (("aqpl-gnt", "gnt-ft"), ("aqpl-cat", "cat-ft"), ("aqpl-gnt", "gnt"), ("aqpl-cat", "cat"))
LAST_ROUND = "last round"
MEAN_OVER_ROUNDS = "mean over query rounds"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over seeds; 0 for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def _summarise(points: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """One entry per name (mean over seeds) and `<name>_std` beside it."""
    summary: dict[str, Any] = {}
    for name in names:
        summary[name], summary[f"{name}_std"] = _mean_std([p[name] for p in points])
    return summary


def summarise_methods(per_seed: Sequence[Mapping[str, Any]], config: SimulationConfig) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in config.methods:
        rows = [seed["methods"][method] for seed in per_seed]
        summary: dict[str, Any] = {"queries": round(float(np.mean([r["queries"] for r in rows])))}
        summary.update(_summarise(rows, (*METRIC_NAMES, "mean_sigma_index")))
        if "mean_over_rounds" in rows[0]:
            summary["mean_over_rounds"] = _summarise([r["mean_over_rounds"] for r in rows], METRIC_NAMES)
        methods[method] = summary
    return methods


def summarise_curves(per_seed: Sequence[Mapping[str, Any]], config: SimulationConfig) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    for strategy in config.strategies:
        curves[strategy] = []
        for round_index in range(config.rounds + 1):
            points = [seed["curves"][strategy][round_index] for seed in per_seed]
            summary: dict[str, Any] = {"queries": round(float(np.mean([p["queries"] for p in points])))}
            summary.update(_summarise(points, (*METRIC_NAMES, "mean_sigma_index")))
            curves[strategy].append(summary)
    return curves


def _stack(
    images: Mapping[int, Mapping[tuple[str, str, int], ImageScores]],
    seeds: Sequence[int],
    kind: str,
    name: str,
    rounds: Sequence[int],
    metric: str,
) -> npt.NDArray[np.float64]:
    """(seeds, test images): each seed's per-image score, averaged over `rounds`."""
    return np.stack(
        [np.mean([images[seed][(kind, name, r)][metric] for r in rounds], axis=0) for seed in seeds]
    )


def comparisons(run: RunOutcome, config: SimulationConfig) -> list[dict[str, Any]]:
    """AQPL against every other strategy at each query count, and the method contrasts (last round and
    mean over the query rounds): each metric, a paired t interval over seeds and a bootstrap over seeds
    and test images, and a sentence."""
    seeds = list(config.seeds)
    entries: list[dict[str, Any]] = []
    curves = run.results.get("curves", {})

    def add(comparison: Comparison, a_label: str, b_label: str, over: str) -> None:
        entry = comparison.to_dict()
        entry["over"] = over
        entry["sentence"] = describe(
            comparison, a_label=a_label, b_label=b_label, metric_label=METRIC_WORDS[comparison.metric]
        )
        entries.append(entry)

    resamples = config.bootstrap_resamples
    if AQPL_STRATEGY in config.strategies:
        for other in (s for s in config.strategies if s != AQPL_STRATEGY):
            for round_index in range(1, config.rounds + 1):
                queries = int(curves[AQPL_STRATEGY][round_index]["queries"])
                for metric in METRIC_NAMES:
                    comparison = compare(
                        AQPL_STRATEGY,
                        other,
                        metric,
                        queries,
                        _stack(run.images, seeds, "curve", AQPL_STRATEGY, [round_index], metric),
                        _stack(run.images, seeds, "curve", other, [round_index], metric),
                        resamples=resamples,
                        seed=round_index,
                    )
                    add(
                        comparison,
                        STRATEGY_LABELS[AQPL_STRATEGY],
                        STRATEGY_LABELS[other],
                        f"round {round_index}",
                    )
    query_rounds = list(range(1, config.rounds + 1))
    for a, b in METHOD_CONTRASTS:
        if a not in config.methods or b not in config.methods:
            continue
        queries = int(run.results["methods"][a]["queries"])
        for over, a_rounds in ((LAST_ROUND, [config.rounds]), (MEAN_OVER_ROUNDS, query_rounds)):
            # A base method has only round 0; a chain is compared round for round.
            b_rounds = a_rounds if "mean_over_rounds" in run.results["methods"][b] else [0]
            for metric in METRIC_NAMES:
                comparison = compare(
                    a,
                    b,
                    metric,
                    queries if over == LAST_ROUND else None,
                    _stack(run.images, seeds, "method", a, a_rounds, metric),
                    _stack(run.images, seeds, "method", b, b_rounds, metric),
                    resamples=resamples,
                    seed=len(entries),
                )
                add(comparison, METHOD_LABELS[a], METHOD_LABELS[b], over)
    return entries


def summarise_diagnostics(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per AQPL chain and round: moves pooled over seeds, their share the predicted way, and the
    Spearman correlation's mean and std over seeds."""
    summary: dict[str, Any] = {}
    for chain in per_seed[0].get("diagnostics", {}):
        rounds = []
        for round_index, first in enumerate(per_seed[0]["diagnostics"][chain]):
            entries = [seed["diagnostics"][chain][round_index] for seed in per_seed]
            row: dict[str, Any] = {"round": first["round"], "sides": {}}
            for side in PREDICTED_DIRECTION:
                pooled = {
                    key: sum(e["sides"][side][key] for e in entries)
                    for key in ("queried", "down", "up", "unchanged", "predicted")
                }
                pooled["predicted_share"] = (
                    pooled["predicted"] / pooled["queried"] if pooled["queried"] else None
                )
                row["sides"][side] = pooled
            correlations = [
                e["spearman_entropy_vs_excess"]
                for e in entries
                if e["spearman_entropy_vs_excess"] is not None
            ]
            row["spearman_mean"], row["spearman_std"] = (
                _mean_std(correlations) if correlations else (None, None)
            )
            row["sample"] = int(sum(e["sample"] for e in entries))
            rounds.append(row)
        summary[chain] = rounds
    return summary


def finish(run: RunOutcome) -> dict[str, Any]:
    """The run's results with the summaries over seeds: methods, curves, comparisons and diagnostics."""
    config = SimulationConfig(**_config_arguments(run.results["config"]))
    per_seed = run.results["per_seed"]
    results = dict(run.results)
    results["methods"] = summarise_methods(per_seed, config)
    results["curves"] = summarise_curves(per_seed, config)
    run_with_summaries = RunOutcome(results, run.images)
    results["comparisons"] = comparisons(run_with_summaries, config)
    results["diagnostics"] = summarise_diagnostics(per_seed)
    return results


def _config_arguments(stored: Mapping[str, Any]) -> dict[str, Any]:
    """SimulationConfig's arguments back from its JSON form (lists -> tuples, paths -> Path)."""
    arguments: dict[str, Any] = {}
    for key, value in stored.items():
        if key in ("dataset_path", "cache_dir") and value is not None:
            arguments[key] = Path(value)
        elif isinstance(value, list):
            arguments[key] = tuple(value)
        else:
            arguments[key] = value
    return arguments


# ---------------------------------------------------------------------------------------------
# Markdown


def _percent(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _points_interval(entry: Mapping[str, Any], key: str) -> str:
    low, high = entry[key]
    if low is None:
        return "—"
    return f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def results_markdown(results: Mapping[str, Any]) -> str:
    """Table 1 with the controls, the curves, the comparisons in words and numbers, the diagnostic."""
    config = results["config"]
    dataset = results["dataset"]
    oracle = results.get("oracle", {})
    seeds = config["seeds"]
    corruption_count = sum(len(levels) for levels in dataset["corruptions"].values())
    lines = [
        "## Accuracy by method (Table 1)",
        "",
        f"Top-1 accuracy (%) on {dataset['name']} ({dataset['train_examples']} training, "
        f"{dataset['test_examples']} test images), mean ± std over {len(seeds)} seed(s). "
        f"Query methods after {config['rounds']} round(s) of {2 * config['budget']} queries; their "
        f"fine-tuning controls (-FT) get the same epochs with no queries. "
        f"Gaussian: mean over σ = {', '.join(f'{c:g}' for c in dataset['gaussian_severities'])}; "
        f"corruptions: the `{dataset['suite']}` suite, mean over "
        f"{len(dataset['corruptions'])} corruption(s), "
        f"{corruption_count} sets. Oracle: τ = {oracle.get('tau')}, F_o trained on "
        f"{oracle.get('reference_train_examples')} images.",
        "",
        "| Method | Clean | Gaussian | Corruptions | Clean, mean of rounds | Gaussian, mean of rounds "
        "| Corruptions, mean of rounds | mean σ_i |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, row in results["methods"].items():
        cells = " | ".join(_percent(row[m], row[f"{m}_std"]) for m in METRIC_NAMES)
        over = row.get("mean_over_rounds")
        mean_cells = (
            " | ".join(_percent(over[m], over[f"{m}_std"]) for m in METRIC_NAMES) if over else "— | — | —"
        )
        lines.append(
            f"| {METHOD_LABELS.get(method, method)} | {cells} | {mean_cells} | "
            f"{row['mean_sigma_index'] / 100:.3f} |"
        )
    if results["curves"]:
        lines += [
            "",
            "## Accuracy against queries, by strategy (all start from the GNT model)",
            "",
            "| Strategy | Queries | Clean | Gaussian | Corruptions |",
            "|---|---:|---:|---:|---:|",
        ]
        for strategy, points in results["curves"].items():
            for point in points:
                cells = " | ".join(_percent(point[m], point[f"{m}_std"]) for m in METRIC_NAMES)
                lines.append(f"| {STRATEGY_LABELS.get(strategy, strategy)} | {point['queries']} | {cells} |")
    entries = results.get("comparisons", [])
    if entries:
        lines += [
            "",
            "## Comparisons",
            "",
            "Differences in points, a − b. `ci95`: paired t interval over seeds; bootstrap: over seeds and "
            "test images (two-stage percentile). p: two-sided paired t-test over seeds.",
            "",
            *(f"- {entry['sentence']} ({entry['over']})." for entry in entries),
            "",
            "| a | b | metric | over | queries | mean | ci95 | bootstrap ci95 | p | seeds |",
            "|---|---|---|---|---:|---:|---|---|---:|---:|",
        ]
        for entry in entries:
            p_value = "—" if entry["p_value"] is None else f"{entry['p_value']:.3g}"
            lines.append(
                f"| {entry['a']} | {entry['b']} | {entry['metric']} | {entry['over']} | "
                f"{entry['queries'] if entry['queries'] is not None else '—'} | {100 * entry['mean']:+.2f} | "
                f"{_points_interval(entry, 'ci95')} | {_points_interval(entry, 'ci95_bootstrap')} | "
                f"{p_value} | {entry['n_seeds']} |"
            )
    diagnostics = results.get("diagnostics", {})
    if diagnostics:
        lines += [
            "",
            "## Corollary 2.1: does H point the way the oracle moves?",
            "",
            "Share of queried levels the oracle moved the predicted way (high-H side down, low-H side up; "
            "pooled over seeds), and the Spearman correlation between H and σ_i − σ_o on a random sample of "
            "examples not queried (mean ± std over seeds; the corollary predicts > 0).",
            "",
            "| Chain | Round | high H: moved down | low H: moved up | Spearman(H, σ_i − σ_o) | sample |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for chain, rounds in diagnostics.items():
            for row in rounds:
                shares = [_share(row["sides"][side]) for side in ("excessive", "deficient")]
                correlation = (
                    "—"
                    if row["spearman_mean"] is None
                    else f"{row['spearman_mean']:+.2f} ± {row['spearman_std']:.2f}"
                )
                row_cells = (chain, row["round"], shares[0], shares[1], correlation, row["sample"])
                lines.append("| " + " | ".join(str(cell) for cell in row_cells) + " |")
    return "\n".join(lines) + "\n"


def _share(side: Mapping[str, Any]) -> str:
    if not side["queried"]:
        return "—"
    return f"{100 * side['predicted_share']:.1f} % of {side['queried']}"


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib's Figure, no pyplot: no global state; PNGs go through the Agg canvas)


def write_curve_plots(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """curves_<metric>.png: accuracy against queries, one line per strategy (the paper's Figures 4-5)."""
    from matplotlib.figure import Figure

    if not results["curves"]:
        return []
    paths = []
    curves = results["curves"]
    # Strategies share their query counts: shift each a little sideways so the error bars stay apart.
    dodge = 0.012 * max(max(p["queries"] for p in points) for points in curves.values())
    for metric in METRIC_NAMES:
        figure = Figure(figsize=(4.8, 3.6), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        for position, (strategy, points) in enumerate(curves.items()):
            marker, linestyle = STRATEGY_STYLES.get(strategy, ("x", "-"))
            shift = (position - (len(curves) - 1) / 2) * dodge
            axes.errorbar(
                [p["queries"] + shift for p in points],
                [100 * p[metric] for p in points],
                yerr=[100 * p[f"{metric}_std"] for p in points],
                marker=marker,
                linestyle=linestyle,
                capsize=3,
                markersize=5,
                label=STRATEGY_LABELS.get(strategy, strategy),
            )
        axes.set_xlabel("number of queries")
        axes.set_ylabel("top-1 accuracy (%)")
        axes.set_title(f"{METRIC_TITLES[metric]} ({results['dataset']['name']})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        path = out_dir / f"curves_{metric}.png"
        figure.savefig(path)
        paths.append(path)
    return paths


def write_comparison_plot(results: Mapping[str, Any], out_dir: Path) -> Path | None:
    """comparisons.png: each contrast at the last round (and mean over rounds) as a point with its
    paired 95 % interval, one panel per metric; the dashed line is "no difference"."""
    from matplotlib.figure import Figure

    rounds = results["config"]["rounds"]
    shown = [
        e
        for e in results.get("comparisons", [])
        if e["over"] in (LAST_ROUND, MEAN_OVER_ROUNDS, f"round {rounds}") and e["ci95"][0] is not None
    ]
    if not shown:
        return None
    labels = list(dict.fromkeys(f"{_label(e['a'])} − {_label(e['b'])} ({_over(e['over'])})" for e in shown))
    figure = Figure(figsize=(10, 0.45 * len(labels) + 1.4), dpi=100, layout="constrained")
    panels = figure.subplots(1, len(METRIC_NAMES), sharey=True)
    for axes, metric in zip(panels, METRIC_NAMES, strict=True):
        for row, label in enumerate(labels):
            match = [
                e
                for e in shown
                if e["metric"] == metric
                and f"{_label(e['a'])} − {_label(e['b'])} ({_over(e['over'])})" == label
            ]
            if not match:
                continue
            entry = match[0]
            mean, (low, high) = 100 * entry["mean"], entry["ci95"]
            axes.errorbar(
                [mean],
                [row],
                xerr=[[mean - 100 * low], [100 * high - mean]],
                marker="o" if low > 0 or high < 0 else "s",
                markerfacecolor="black" if low > 0 or high < 0 else "white",
                color="black",
                capsize=3,
            )
        axes.axvline(0.0, linestyle="--", color="grey", linewidth=1)
        axes.set_title(METRIC_TITLES[metric])
        axes.set_xlabel("difference (points)")
        axes.grid(alpha=0.3, axis="x")
    panels[0].set_yticks(range(len(labels)), labels, fontsize="small")
    panels[0].invert_yaxis()
    path = out_dir / "comparisons.png"
    figure.savefig(path)
    return path


def _label(name: str) -> str:
    return METHOD_LABELS.get(name, STRATEGY_LABELS.get(name, name))


def _over(over: str) -> str:
    return "mean of rounds" if over == MEAN_OVER_ROUNDS else "last round" if over == LAST_ROUND else over


def write_diagnostic_plot(results: Mapping[str, Any], out_dir: Path) -> Path | None:
    """diagnostics.png: per round, the share moved the predicted way on each side, and
    Spearman(H, σ_i − σ_o) off the queries."""
    from matplotlib.figure import Figure

    diagnostics = results.get("diagnostics", {})
    if not diagnostics:
        return None
    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    moves, correlation = figure.subplots(1, 2)
    styles = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."))
    for position, (chain, rounds) in enumerate(diagnostics.items()):
        marker, linestyle = styles[position % len(styles)]
        x = [row["round"] for row in rounds]
        for side, fill in (("excessive", "black"), ("deficient", "white")):
            shares = [
                100 * row["sides"][side]["predicted_share"]
                if row["sides"][side]["predicted_share"] is not None
                else math.nan
                for row in rounds
            ]
            word = "high H moved down" if side == "excessive" else "low H moved up"
            moves.plot(
                x, shares, marker=marker, linestyle=linestyle, color="black", markerfacecolor=fill,
                label=f"{chain}: {word}",
            )  # fmt: skip
        means = [row["spearman_mean"] if row["spearman_mean"] is not None else math.nan for row in rounds]
        spreads = [row["spearman_std"] if row["spearman_std"] is not None else 0.0 for row in rounds]
        correlation.errorbar(
            x, means, yerr=spreads, marker=marker, linestyle=linestyle, color="black", capsize=3, label=chain
        )
    moves.set_ylim(0, 100)
    moves.set_xlabel("round")
    moves.set_ylabel("queried levels moved the predicted way (%)")
    moves.legend(fontsize="x-small")
    moves.grid(alpha=0.3)
    correlation.axhline(0.0, linestyle="--", color="grey", linewidth=1)
    correlation.set_xlabel("round")
    correlation.set_ylabel("Spearman(H, σ_i − σ_o), not queried")
    correlation.legend(fontsize="x-small")
    correlation.grid(alpha=0.3)
    path = out_dir / "diagnostics.png"
    figure.savefig(path)
    return path


def write_results(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """results.json, results.md and the plots under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
    markdown_path = out_dir / "results.md"
    markdown_path.write_text(results_markdown(results))
    plots = [
        *write_curve_plots(results, out_dir),
        write_comparison_plot(results, out_dir),
        write_diagnostic_plot(results, out_dir),
    ]
    return [json_path, markdown_path, *(path for path in plots if path is not None)]
