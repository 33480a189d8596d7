"""A round's timeline as one horizontal stacked bar (inline SVG: the pages' CSP allows no inline styles).

Each state the round has been in is a segment as wide as its share of the round's time, in the
order a round goes through them; its <title> (a tooltip) and the bar's label give the seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Final

from backend.models import RoundState

ORDER: Final = tuple(state.value for state in RoundState if state != RoundState.published)
WIDTH: Final = 240  # px of the bar in the rounds table
HEIGHT: Final = 14


def duration_text(seconds: float) -> str:
    """12 s, 3 min 5 s, 2 h 10 min, 3 d 4 h: two units at most, for people."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def timeline_label(state_seconds: Mapping[str, float]) -> str:
    parts = [f"{state} {duration_text(state_seconds[state])}" for state in ORDER if state in state_seconds]
    return ", ".join(parts) if parts else "no time recorded"


def timeline_svg(state_seconds: Mapping[str, float]) -> str:
    """The stacked bar; an empty grey bar when nothing is recorded."""
    total = sum(max(0.0, state_seconds.get(state, 0.0)) for state in ORDER)
    label = escape(f"Time per state: {timeline_label(state_seconds)}")
    segments = []
    x = 0.0
    for state in ORDER:
        seconds = max(0.0, state_seconds.get(state, 0.0))
        if state not in state_seconds or total <= 0:
            continue
        width = WIDTH * seconds / total
        title = escape(f"{state}: {duration_text(seconds)}")
        segments.append(
            f'<rect class="tl-segment tl-{state}" data-state="{state}" data-seconds="{seconds:.1f}" '
            f'x="{x:.2f}" y="0" width="{width:.2f}" height="{HEIGHT}"><title>{title}</title></rect>'
        )
        x += width
    return (
        f'<svg class="timeline-bar" role="img" aria-label="{label}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect class="tl-track" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>{"".join(segments)}</svg>'
    )
