"""Charts of the project page as inline SVG, drawn from the metrics on the server (no chart library).

Every series is told apart by its marker and dash pattern as well as its colour, and the legend
repeats both, so the charts read in grey print and for colour-blind readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_SIZE, sigma_of

WIDTH = 560
HEIGHT = 330
# Room for the axis labels (left, bottom) and the legend (top), in SVG user units.
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 44
MARGIN_BOTTOM = 52
# Five ladder steps (Δσ = 0.05) per histogram bin: 91 one-step bars are too thin to read.
SIGMA_BIN_STEPS = 5


@dataclass(frozen=True)
class AccuracyPoint:
    """One published round: cumulative queries and the test accuracies (fractions 0..1, None if absent)."""

    queries: int
    clean: float | None
    gaussian: float | None
    corruptions: float | None


@dataclass(frozen=True)
class _Series:
    key: str
    label: str
    colour: str
    dash: str  # stroke-dasharray; "" for solid
    marker: str  # circle | square | triangle


# Okabe-Ito colours (distinct for the common colour-vision deficiencies), plus marker and dash.
_ACCURACY_SERIES = (
    _Series("clean", "clean", "#0072B2", "", "circle"),
    _Series("gaussian", "Gaussian noise", "#D55E00", "7 4", "square"),
    _Series("corruptions", "corruptions", "#009E73", "2 3", "triangle"),
)


def accuracy_chart_svg(points: Sequence[AccuracyPoint], *, title: str = "Test accuracy vs queries") -> str:
    """Line chart of clean / Gaussian / corruption accuracy against the cumulative number of queries."""
    if not points:
        return _empty_chart(title, "No published round yet: the chart appears after the first checkpoint.")
    plot = _PlotArea()
    max_queries = max(point.queries for point in points)
    x_max = max(_nice_ceiling(max(max_queries, 1)), 5.0)
    values = [
        value
        for point in points
        for value in (point.clean, point.gaussian, point.corruptions)
        if value is not None
    ]
    y_min = 0.0 if not values else max(0.0, _floor_to(min(values), 0.1))
    y_max = 1.0

    def x_of(queries: float) -> float:
        return plot.left + plot.width * queries / x_max

    def y_of(accuracy: float) -> float:
        return plot.bottom - plot.height * (accuracy - y_min) / (y_max - y_min)

    parts = [_open_svg(title, "accuracy-chart")]
    parts.append(_title_text(title))
    for tick in _ticks(0, x_max, 5, integer=True):
        x = x_of(tick)
        parts.append(_grid_line(x, plot.top, x, plot.bottom))
        parts.append(_text(x, plot.bottom + 18, f"{tick:g}", anchor="middle"))
    for tick in _ticks(y_min, y_max, 5):
        y = y_of(tick)
        parts.append(_grid_line(plot.left, y, plot.right, y))
        parts.append(_text(plot.left - 8, y + 4, f"{tick * 100:.0f}%", anchor="end"))
    parts.append(_axes(plot))
    parts.append(
        _text(plot.left + plot.width / 2, HEIGHT - 10, "queries answered (cumulative)", anchor="middle")
    )
    parts.append(_vertical_text(16, plot.top + plot.height / 2, "test accuracy"))

    for series in _ACCURACY_SERIES:
        coords = [
            (x_of(point.queries), y_of(value), point.queries, value)
            for point in points
            if (value := getattr(point, series.key)) is not None
        ]
        if not coords:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
        dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
        parts.append(
            f'<polyline class="series series-{series.key}" points="{path}" fill="none" '
            f'stroke="{series.colour}" stroke-width="2"{dash}/>'
        )
        for x, y, queries, value in coords:
            label = f"{series.label}: {value * 100:.1f}% after {queries} queries"
            parts.append(_marker(series, x, y, label))
    parts.append(_legend([(series, series.label) for series in _ACCURACY_SERIES], plot))
    parts.append("</svg>")
    return "".join(parts)


def sigma_histogram_svg(
    before: Sequence[int] | None,
    after: Sequence[int] | None,
    *,
    title: str = "σ of the training examples, before and after the last round",
) -> str:
    """Grouped bars of the per-example σ counts, binned by Δσ = 0.05: before solid, after hatched."""
    histograms = [h for h in (before, after) if h is not None]
    if not histograms:
        return _empty_chart(title, "No σ histogram yet.")
    for histogram in histograms:
        if len(histogram) != LADDER_SIZE:
            raise ValueError(
                f"a σ histogram has {LADDER_SIZE} counts (one per ladder index), got {len(histogram)}"
            )
    binned = [_bin_ladder_counts(h) if h is not None else None for h in (before, after)]
    num_bins = len(next(b for b in binned if b is not None))
    y_max = _nice_ceiling(max(max(b) for b in binned if b is not None) or 1)
    plot = _PlotArea()
    bin_width = plot.width / num_bins

    def y_of(count: float) -> float:
        return plot.bottom - plot.height * count / y_max

    parts = [_open_svg(title, "sigma-histogram")]
    parts.append(
        '<defs><pattern id="hatch-after" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#D55E00" stroke-width="3"/></pattern></defs>'
    )
    parts.append(_title_text(title))
    for tick in _ticks(0, y_max, 5):
        y = y_of(tick)
        parts.append(_grid_line(plot.left, y, plot.right, y))
        parts.append(_text(plot.left - 8, y + 4, f"{tick:g}", anchor="end"))
    for bin_index in range(0, num_bins + 1, 2):
        x = plot.left + bin_index * bin_width
        sigma = min(bin_index * SIGMA_BIN_STEPS, LADDER_MAX_INDEX) / 100
        parts.append(
            _text(x, plot.bottom + 18, f"{sigma:.1f}" if bin_index % 4 == 0 else "", anchor="middle")
        )
        parts.append(
            f'<line x1="{x:.1f}" y1="{plot.bottom}" x2="{x:.1f}" y2="{plot.bottom + 5}" stroke="#333"/>'
        )
    styles = (
        ("before", "before the round", 'fill="#56B4E9" stroke="#1f3f5f"'),
        ("after", "after the round", 'fill="url(#hatch-after)" stroke="#7a2e00"'),
    )
    present = [(style, counts) for style, counts in zip(styles, binned, strict=True) if counts is not None]
    bar_width = bin_width * 0.8 / len(present)
    for slot, ((key, label, paint), counts) in enumerate(present):
        for bin_index, count in enumerate(counts):
            if count == 0:
                continue
            x = plot.left + bin_index * bin_width + bin_width * 0.1 + slot * bar_width
            y = y_of(count)
            low = bin_index * SIGMA_BIN_STEPS
            high = min(low + SIGMA_BIN_STEPS - 1, LADDER_MAX_INDEX)
            if bin_index == num_bins - 1:
                high = LADDER_MAX_INDEX
            tip = f"{label}: {count} examples with σ {sigma_of(low):.2f}-{sigma_of(high):.2f}"
            parts.append(
                f'<rect class="bar bar-{key}" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" '
                f'height="{plot.bottom - y:.1f}" {paint}><title>{escape(tip)}</title></rect>'
            )
    parts.append(_axes(plot))
    parts.append(_text(plot.left + plot.width / 2, HEIGHT - 10, "σ (noise level)", anchor="middle"))
    parts.append(_vertical_text(16, plot.top + plot.height / 2, "training examples"))
    legend_x = plot.left
    for (_key, label, paint), _counts in present:
        parts.append(
            f'<rect x="{legend_x}" y="{MARGIN_TOP - 24}" width="16" height="12" {paint}/>'
            + _text(legend_x + 22, MARGIN_TOP - 14, label)
        )
        legend_x += 22 + 8 * len(label) + 24
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class OraclePoint:
    """One answered query of a project with F_o: the people's consensus and σ_o (ladder indices)."""

    round: int
    consensus: int
    oracle: int


def oracle_scatter_svg(
    points: Sequence[OraclePoint], *, title: str = "People's consensus σ vs the simulated oracle's σ_o"
) -> str:
    """Scatter of each query's consensus (y) against σ_o (x), both on the σ ladder, with the line y = x."""
    if not points:
        return _empty_chart(title, "No query has both a consensus and σ_o yet: they come with each round.")
    plot = _PlotArea()
    top = LADDER_MAX_INDEX / 100

    def x_of(sigma: float) -> float:
        return plot.left + plot.width * sigma / top

    def y_of(sigma: float) -> float:
        return plot.bottom - plot.height * sigma / top

    parts = [_open_svg(title, "oracle-scatter")]
    parts.append(_title_text(title))
    for tick in _ticks(0, top, 6):
        parts.append(_grid_line(x_of(tick), plot.top, x_of(tick), plot.bottom))
        parts.append(_text(x_of(tick), plot.bottom + 18, f"{tick:.2f}", anchor="middle"))
        parts.append(_grid_line(plot.left, y_of(tick), plot.right, y_of(tick)))
        parts.append(_text(plot.left - 8, y_of(tick) + 4, f"{tick:.2f}", anchor="end"))
    parts.append(_axes(plot))
    parts.append(
        f'<line class="identity" x1="{x_of(0):.1f}" y1="{y_of(0):.1f}" x2="{x_of(top):.1f}" '
        f'y2="{y_of(top):.1f}" stroke="#888" stroke-width="1.5" stroke-dasharray="5 4"/>'
    )
    parts.append(
        _text(plot.left + plot.width / 2, HEIGHT - 10, "σ_o: simulated oracle (Eq. 7)", anchor="middle")
    )
    parts.append(_vertical_text(16, plot.top + plot.height / 2, "σ: people's consensus (median)"))
    # Answers sit on a 91-level ladder, so queries often coincide: one marker per distinct pair,
    # sized by how many queries it stands for, and its tooltip says which rounds.
    groups: dict[tuple[int, int], list[int]] = {}
    for point in points:
        groups.setdefault((point.oracle, point.consensus), []).append(point.round)
    for (oracle, consensus), rounds in sorted(groups.items()):
        x, y = x_of(oracle / 100), y_of(consensus / 100)
        radius = 4.0 + 1.5 * math.sqrt(len(rounds) - 1)
        listed = ", ".join(str(number) for number in sorted(set(rounds)))
        tip = (
            f"{len(rounds)} quer{'y' if len(rounds) == 1 else 'ies'} (round {listed}): "
            f"consensus σ {sigma_of(consensus):.2f}, σ_o {sigma_of(oracle):.2f}"
        )
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="#0072B2" '
            f'fill-opacity="0.35" stroke="#0072B2" stroke-width="1.5"><title>{escape(tip)}</title></circle>'
        )
    legend_y = MARGIN_TOP - 18
    parts.append(
        f'<circle cx="{plot.left + 6}" cy="{legend_y}" r="4.5" fill="#0072B2" fill-opacity="0.35" '
        'stroke="#0072B2" stroke-width="1.5"/>'
        + _text(plot.left + 16, legend_y + 4, "a query (larger: several)")
    )
    legend_x = plot.left + 220
    parts.append(
        f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 28}" y2="{legend_y}" '
        'stroke="#888" stroke-width="1.5" stroke-dasharray="5 4"/>'
        + _text(legend_x + 34, legend_y + 4, "agreement (σ = σ_o)")
    )
    parts.append("</svg>")
    return "".join(parts)


def _bin_ladder_counts(counts: Sequence[int]) -> list[int]:
    """Sum ladder counts in bins of SIGMA_BIN_STEPS indices; the last index (0.90) joins the last bin."""
    bins = [
        sum(counts[start : start + SIGMA_BIN_STEPS]) for start in range(0, LADDER_MAX_INDEX, SIGMA_BIN_STEPS)
    ]
    bins[-1] += sum(counts[len(bins) * SIGMA_BIN_STEPS :])
    return bins


@dataclass(frozen=True)
class _PlotArea:
    left: float = MARGIN_LEFT
    top: float = MARGIN_TOP
    right: float = WIDTH - MARGIN_RIGHT
    bottom: float = HEIGHT - MARGIN_BOTTOM

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def _open_svg(title: str, css_class: str) -> str:
    return (
        f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="13">'
        f"<title>{escape(title)}</title>"
    )


def _title_text(title: str) -> str:
    return _text(WIDTH / 2, 16, title, anchor="middle", weight="600")


def _empty_chart(title: str, message: str) -> str:
    return (
        _open_svg(title, "chart-empty")
        + _title_text(title)
        + _text(WIDTH / 2, HEIGHT / 2, message, anchor="middle")
        + "</svg>"
    )


def _text(x: float, y: float, content: str, *, anchor: str = "start", weight: str = "400") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}" '
        f'fill="#222">{escape(content)}</text>'
    )


def _vertical_text(x: float, y: float, content: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="#222" '
        f'transform="rotate(-90 {x:.1f} {y:.1f})">{escape(content)}</text>'
    )


def _grid_line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#ddd" stroke-width="1"/>'


def _axes(plot: _PlotArea) -> str:
    return (
        f'<polyline points="{plot.left},{plot.top} {plot.left},{plot.bottom} {plot.right},{plot.bottom}" '
        'fill="none" stroke="#333" stroke-width="1.5"/>'
    )


def _marker(series: _Series, x: float, y: float, label: str) -> str:
    tip = f"<title>{escape(label)}</title>"
    paint = f'fill="#ffffff" stroke="{series.colour}" stroke-width="2"'
    if series.marker == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" {paint}>{tip}</rect>'
    if series.marker == "triangle":
        corners = f"{x:.1f},{y - 5:.1f} {x - 5:.1f},{y + 4:.1f} {x + 5:.1f},{y + 4:.1f}"
        return f'<polygon points="{corners}" {paint}>{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" {paint}>{tip}</circle>'


def _legend(entries: Sequence[tuple[_Series, str]], plot: _PlotArea) -> str:
    parts = []
    x = plot.left
    y = MARGIN_TOP - 18
    for series, label in entries:
        dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
        parts.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 28}" y2="{y}" '
            f'stroke="{series.colour}" stroke-width="2"{dash}/>'
        )
        parts.append(_marker(series, x + 14, y, label))
        parts.append(_text(x + 34, y + 4, label))
        x += 34 + 7 * len(label) + 28
    return "".join(parts)


def _ticks(low: float, high: float, count: int, *, integer: bool = False) -> list[float]:
    step = _nice_step((high - low) / count)
    if integer:  # counts (queries) take whole-number ticks
        step = max(1.0, float(round(step)))
    first = _floor_to(low, step)
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    magnitude = 10 ** _floor_log10(raw)
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _nice_ceiling(value: float) -> float:
    step = _nice_step(value / 5)
    return float(step * -(-value // step))


def _floor_to(value: float, step: float) -> float:
    return float(step * (value // step))


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent
