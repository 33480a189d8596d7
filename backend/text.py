"""Names people type and others read (projects, users, tokens): one line of visible text.

A control character (a newline, an escape) can forge lines in logs and terminals; a bidirectional
override (Trojan Source, CVE-2021-42574) makes a name display differently from what it is, e.g.
"\u202eadmin" shown reversed. Both are refused with a 422 that says which character is the problem.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they reorder what follows.
BIDI_CONTROLS = frozenset(chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# Cc: C0/C1 controls (NUL, newline, escape); Cs: unpaired surrogates; Zl/Zp: line and paragraph breaks.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def refused_character(text: str) -> str | None:
    """The first character of `text` a name may not hold, or None."""
    for character in text:
        if character in BIDI_CONTROLS or unicodedata.category(character) in _REFUSED_CATEGORIES:
            return character
    return None


def _printable(text: str) -> str:
    character = refused_character(text)
    if character is not None:
        code = f"U+{ord(character):04X}"
        kind = "a bidirectional override" if character in BIDI_CONTROLS else "a control character"
        raise ValueError(f"must not contain {kind} ({code}): type the name as plain text on one line")
    return text


PrintableText = Annotated[str, AfterValidator(_printable)]
