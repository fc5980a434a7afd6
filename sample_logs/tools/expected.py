"""Expected counts of a sample log, derived from the independent records (sink, client,
generator), never from logscan. The shape is the one `logscan scan --json` prints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def count_lines(log: Path) -> int:
    """Lines as a line reader sees them: LF-terminated records (CRLF counts once)."""
    data = log.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


class Tally:
    def __init__(self) -> None:
        self.replies: dict[str, Counter[str]] = {"outbound": Counter(), "inbound": Counter()}
        self.enhanced: dict[str, Counter[str]] = {"outbound": Counter(), "inbound": Counter()}
        self.deliveries: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()

    def reply(self, direction: str, code: str, enhanced: str) -> None:
        self.replies[direction][code] += 1
        if enhanced:
            self.enhanced[direction][enhanced] += 1

    def outbound_attempt(self, code: str, enhanced: str) -> None:
        """One recipient delivery line: the reply that decided this attempt, and its outcome."""
        self.reply("outbound", code, enhanced)
        self.deliveries[{"2": "sent", "4": "deferred", "5": "bounced"}[code[0]]] += 1

    def inbound_refusal(self, code: str, enhanced: str) -> None:
        self.reply("inbound", code, enhanced)
        self.rejections[code] += 1

    def result(self, lines: int, unparsed: int = 0) -> dict[str, Any]:
        def plain(c: Counter[str]) -> dict[str, int]:
            return {k: c[k] for k in sorted(c) if c[k]}

        deliveries = {k: self.deliveries[k] for k in ("sent", "bounced", "deferred", "expired")}
        return {
            "lines": lines,
            "unparsed": unparsed,
            "replies": {d: plain(self.replies[d]) for d in ("outbound", "inbound")},
            "enhanced": {d: plain(self.enhanced[d]) for d in ("outbound", "inbound")},
            "deliveries": deliveries,
            "rejections": plain(self.rejections),
        }


def write_expected(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
