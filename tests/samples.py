"""Sample-with-expected-result tables (fail2ban style) for the parser tests.

A sample file holds real log lines. The comment line before each one says what the
parser must yield for it:

    # expect: [{"direction": "outbound", "code": "551", "enhanced": "5.1.1", "status": "bounced"}]
    # expect: []                      (understood, carries nothing)
    # expect: unparsed bad-timestamp  (not understood, with this reason)

Only the keys given are compared, so a table states what matters about each line.
Lines starting with `# source:` or plain `#` comments are ignored; blank lines too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logscan.events import Event, ParseResult, Unparsed

SAMPLES = Path(__file__).parent / "samples"


@dataclass(frozen=True)
class Sample:
    path: Path
    lineno: int
    line: str
    expect: list[dict[str, Any]] | str  # events, or the unparsed reason

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.lineno}"


def load(name: str) -> list[Sample]:
    """Every sample of `tests/samples/<name>`, in file order."""
    path = SAMPLES / name
    raw = path.read_bytes().decode("utf-8", "surrogateescape")
    out: list[Sample] = []
    pending: list[dict[str, Any]] | str | None = None
    for lineno, text in enumerate(raw.split("\n"), 1):
        line = text.removesuffix("\r")
        if line.startswith("# expect:"):
            spec = line[len("# expect:") :].strip()
            pending = spec.split(None, 1)[1] if spec.startswith("unparsed") else json.loads(spec)
            continue
        if not line.strip() or (line.startswith("#") and pending is None):
            continue
        if pending is None:
            raise AssertionError(f"{path.name}:{lineno}: sample line without '# expect:' before it")
        out.append(Sample(path, lineno, line, pending))
        pending = None
    return out


def check(sample: Sample, result: ParseResult) -> None:
    """Assert that `result` is what the sample's expectation says."""
    if isinstance(sample.expect, str):
        assert isinstance(result, Unparsed), f"{sample.id}: expected unparsed, got {result!r}"
        assert result.reason == sample.expect, f"{sample.id}: reason {result.reason!r}"
        return
    assert not isinstance(result, Unparsed), f"{sample.id}: unparsed {result!r}"
    assert len(result) == len(sample.expect), f"{sample.id}: {len(result)} events: {result!r}"
    for got, want in zip(result, sample.expect, strict=True):
        assert isinstance(got, Event)
        for key, value in want.items():
            assert getattr(got, key) == value, f"{sample.id}: {key}={getattr(got, key)!r}, want {value!r}"
