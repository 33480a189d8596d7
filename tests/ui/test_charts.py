"""The server-drawn SVG charts: well-formed, every series told apart without colour, honest axes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from aqpl.ladder import LADDER_SIZE
from backend.ui.charts import (
    AccuracyPoint,
    OraclePoint,
    accuracy_chart_svg,
    oracle_scatter_svg,
    sigma_histogram_svg,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314  # our own output, parsed to check it is well-formed


def texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def test_accuracy_chart_draws_each_series_with_its_own_dash_and_marker() -> None:
    points = [
        AccuracyPoint(queries=0, clean=0.91, gaussian=0.62, corruptions=0.70),
        AccuracyPoint(queries=20, clean=0.92, gaussian=0.71, corruptions=0.74),
        AccuracyPoint(queries=40, clean=0.93, gaussian=0.75, corruptions=None),
    ]
    root = parse(accuracy_chart_svg(points))
    lines = {
        line.get("class"): line
        for line in root.iter(f"{SVG}polyline")
        if "series" in (line.get("class") or "")
    }
    assert set(lines) == {"series series-clean", "series series-gaussian", "series series-corruptions"}
    dashes = {line.get("stroke-dasharray") for line in lines.values()}
    assert len(dashes) == 3, "solid, dashed and dotted: readable in grey"
    assert len(lines["series series-corruptions"].get("points", "").split()) == 2, (
        "a missing value is skipped"
    )
    # Markers: circles for clean, squares for Gaussian, triangles for corruptions (+1 each in the legend).
    assert len(list(root.iter(f"{SVG}circle"))) == 3 + 1
    assert len([r for r in root.iter(f"{SVG}rect")]) == 3 + 1
    assert len(list(root.iter(f"{SVG}polygon"))) == 2 + 1
    labels = texts(root)
    for expected in (
        "clean",
        "Gaussian noise",
        "corruptions",
        "queries answered (cumulative)",
        "test accuracy",
    ):
        assert expected in labels
    assert "40" in labels, "the x axis reaches the last query count"
    tooltips = [title.text for title in root.iter(f"{SVG}title")]
    assert "Gaussian noise: 75.0% after 40 queries" in tooltips


def test_accuracy_chart_without_rounds_says_so() -> None:
    root = parse(accuracy_chart_svg([]))
    assert any("No published round yet" in text for text in texts(root))


def test_titles_are_escaped() -> None:
    svg = accuracy_chart_svg([], title="<script>alert(1)</script>")
    assert "<script>" not in svg
    parse(svg)


def test_sigma_histogram_bins_every_example_and_hatches_the_after_bars() -> None:
    before = [0] * LADDER_SIZE
    before[30] = 100
    after = [0] * LADDER_SIZE
    after[30] = 90
    after[42] = 6
    after[90] = 4
    root = parse(sigma_histogram_svg(before, after))
    before_bars = [bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar bar-before"]
    after_bars = [bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar bar-after"]
    assert len(before_bars) == 1 and len(after_bars) == 3
    assert all(bar.get("fill") == "url(#hatch-after)" for bar in after_bars), (
        "after is hatched, not only coloured"
    )
    tips = sorted(bar.find(f"{SVG}title").text or "" for bar in after_bars)  # type: ignore[union-attr]
    assert tips == [
        "after the round: 4 examples with σ 0.85-0.90",
        "after the round: 6 examples with σ 0.40-0.44",
        "after the round: 90 examples with σ 0.30-0.34",
    ]
    assert {"before the round", "after the round", "σ (noise level)"} <= set(texts(root))


def test_sigma_histogram_of_one_state_and_bad_lengths() -> None:
    counts = [1] * LADDER_SIZE
    root = parse(sigma_histogram_svg(counts, None, title="now"))
    assert not [bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar bar-after"]
    assert any("No σ histogram" in text for text in texts(parse(sigma_histogram_svg(None, None))))
    with pytest.raises(ValueError, match="91 counts"):
        sigma_histogram_svg([1, 2, 3], None)


def test_oracle_scatter_puts_each_query_at_sigma_o_and_consensus_and_merges_repeats() -> None:
    points = [
        OraclePoint(round=1, consensus=45, oracle=30),
        OraclePoint(round=2, consensus=45, oracle=30),  # the same pair: one larger marker
        OraclePoint(round=1, consensus=0, oracle=90),
    ]
    root = parse(oracle_scatter_svg(points))
    circles = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]
    assert len(circles) == 2
    by_tip = {(c.find(f"{SVG}title").text or ""): c for c in circles}  # type: ignore[union-attr]
    merged = by_tip["2 queries (round 1, 2): consensus σ 0.45, σ_o 0.30"]
    single = by_tip["1 query (round 1): consensus σ 0.00, σ_o 0.90"]
    assert float(merged.get("r", 0)) > float(single.get("r", 0))
    # σ_o on x (0.90 at the right edge), consensus on y (0 at the bottom); the identity line spans both.
    assert float(single.get("cx", 0)) > float(merged.get("cx", 0))
    assert float(single.get("cy", 0)) > float(merged.get("cy", 0))
    assert root.find(f"{SVG}line[@class='identity']") is not None
    assert "σ_o: simulated oracle (Eq. 7)" in texts(root)
    assert "chart-empty" in (parse(oracle_scatter_svg([])).get("class") or "")
