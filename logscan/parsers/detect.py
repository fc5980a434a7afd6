"""Which MTA wrote a log: decided from its first lines, never silently."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Signatures cheap enough for thousands of lines; the parser then confirms line by line.
_SIGNS = {
    "postfix": re.compile(r" postfix(?:-[\w.-]+)?/[\w/.-]+\[\d+\]: "),
    "exim": re.compile(
        r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?(?: [+-]\d{4})?"
        r"(?: \[\d+\])? (?:[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4} "
        r"|H=|SMTP |no MAIL |\S+ authenticator)"
        r"| exim\[\d+\]: )"
    ),
    "mailenable": re.compile(
        r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d\t(?:SMTP-IN|SMTP-OU)\t|LOG FILE (?:STARTED|CLOSED)"
    ),
}
SAMPLE_LINES = 2000


@dataclass(frozen=True, slots=True)
class Detection:
    """The detected format (None when nothing matched) and how many sampled lines said so."""

    format: str | None
    matched: int
    sampled: int


def detect(lines: Iterable[str]) -> Detection:
    """Vote over up to SAMPLE_LINES non-blank lines; ties go to the first format in the list."""
    votes = dict.fromkeys(_SIGNS, 0)
    sampled = 0
    for line in lines:
        if not line.strip():
            continue
        sampled += 1
        for fmt, sign in _SIGNS.items():
            if sign.search(line[:2000]):
                votes[fmt] += 1
        if sampled >= SAMPLE_LINES:
            break
    best = max(votes, key=lambda f: votes[f])
    if votes[best] == 0:
        return Detection(None, 0, sampled)
    return Detection(best, votes[best], sampled)
