"""`logscan scan`: whole files (plain or .gz) through the pipeline, and the report it prints."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from logscan.core.aggregate import OTHER, Aggregate, Snapshot
from logscan.core.pipeline import LineCounts, Observer, Pipeline
from logscan.events import DELIVERY_STATUSES
from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.detect import SAMPLE_LINES, detect

GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_MIN_BYTES = 32 << 20
CHUNK_CHARS = 1 << 20  # characters per read: whole lines of it go to Pipeline.feed_text


class ScanError(Exception):
    """A file that cannot be scanned (unreadable, or its format cannot be told)."""


@dataclass(slots=True)
class FileReport:
    path: str
    format: str
    counts: LineCounts
    warning: str = ""


@dataclass(slots=True)
class ScanReport:
    files: list[FileReport] = field(default_factory=list)
    # Offenders over the whole input (diagnosis_window_s=0), not the daemon's last hour.
    aggregate: Aggregate = field(default_factory=lambda: Aggregate(top_domains=20, diagnosis_window_s=0))


@contextmanager
def open_text(path: Path) -> Iterator[tuple[IO[str], IO[bytes], int]]:
    """Text lines of a plain or gzip file (detected by content), its raw stream and raw size."""
    raw = path.open("rb")
    try:
        size = os.fstat(raw.fileno()).st_size
        binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if raw.read(2) == GZIP_MAGIC else raw  # type: ignore[assignment]
        raw.seek(0)
        # surrogateescape: a bad byte survives into the parser's view instead of stopping the read.
        # newline="\n": only LF ends a line, as in the daemon's tailer; a CRLF line keeps its CR,
        # which parsers drop, and a lone CR inside a MailEnable row does not split the row.
        with io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="\n") as text:
            yield text, raw, size
    finally:
        raw.close()


def _lines(text: IO[str]) -> Iterator[str]:
    for line in text:
        yield line[:-1] if line[-1:] == "\n" else line


def _chunks(text: IO[str], size: int = CHUNK_CHARS) -> Iterator[str]:
    """The text in pieces of whole lines, each ending in "\n" (a last line without one gets it).

    Only LF ends a line (see open_text), as in the daemon.
    """
    pending: list[str] = []  # a line longer than one read, in pieces (no quadratic copying)
    while True:
        block = text.read(size)
        if not block:
            break
        cut = block.rfind("\n") + 1
        if cut == 0:
            pending.append(block)
            continue
        if pending:
            pending.append(block[:cut])
            yield "".join(pending)
            pending.clear()
        else:
            yield block[:cut] if cut < len(block) else block
        if cut < len(block):
            pending.append(block[cut:])
    if pending:
        pending.append("\n")
        yield "".join(pending)


def detect_file(path: Path) -> str | None:
    """The format of `path` judged from its first lines."""
    with open_text(path) as (text, _raw, _size):
        head = []
        for line in _lines(text):
            head.append(line)
            if len(head) >= SAMPLE_LINES:
                break
    return detect(head).format


def scan_file(
    path: Path,
    fmt: str,
    report: ScanReport,
    *,
    tz_name: str = "",
    observers: tuple[Observer, ...] = (),
    progress: bool = False,
    log_name: str = "",
    chunk_chars: int = CHUNK_CHARS,
) -> FileReport:
    """Scan one file into `report.aggregate`; raises ScanError when it cannot be read."""
    from logscan.app.config import zone  # noqa: PLC0415 - avoid a config import cycle at module load

    try:
        chosen = fmt if fmt != "auto" else detect_file(path)
        warning = ""
        if chosen is None:
            chosen = "postfix"
            warning = "format not recognised from the first lines; tried postfix (see unparsed lines)"
        mtime = path.stat().st_mtime
        name = log_name or path.name
        options = ParserOptions(log=name, tz=zone(tz_name), reference_time=mtime)
        pipe = Pipeline(name, make_parser(chosen, options), report.aggregate, observers, keep_examples=True)
        with open_text(path) as (text, raw, size):
            if progress and size >= PROGRESS_MIN_BYTES:
                _feed_with_progress(pipe, text, raw, size, path.name)
            else:
                for chunk in _chunks(text, chunk_chars):
                    pipe.feed_text(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ScanError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc
    counts = pipe.counts
    if not counts.total:
        warning = "empty file: no lines"
    elif not warning and counts.unparsed * 2 > counts.total:
        warning = (
            f"{counts.unparsed} of {counts.total} lines not understood as {chosen}: "
            "wrong --format, or a log this version does not know"
        )
    fr = FileReport(str(path), chosen, counts, warning)
    report.files.append(fr)
    return fr


def scan_journal(
    report: ScanReport,
    fmt: str,
    *,
    directory: str = "",
    since: str = "",
    identifiers: tuple[str, ...] = (),
    observers: tuple[Observer, ...] = (),
) -> FileReport:
    """Scan the journal (local, or a directory of journal files) up to its end, like a file."""
    from logscan.sources.journal import JournalSource, default_identifiers  # noqa: PLC0415

    src = JournalSource("journal", directory=directory, start_at="beginning", since=since, follow=False,
                        identifiers=identifiers or default_identifiers(fmt))
    pipe: Pipeline | None = None
    chosen = fmt if fmt != "auto" else ""
    try:
        while not src.finished:
            lines = src.poll()
            if not src.up:
                raise ScanError(f"journal {directory or '(local)'}: {src.error}")
            if not lines:
                continue
            text = [b.decode("utf-8", "surrogateescape") for b in lines]
            if pipe is None:
                chosen = chosen or detect(text[:SAMPLE_LINES]).format or "postfix"
                options = ParserOptions(log="journal", tz=None, reference_time=0.0)
                pipe = Pipeline("journal", make_parser(chosen, options), report.aggregate, observers,
                                keep_examples=True)
            pipe.feed_text("\n".join(text) + "\n")
    finally:
        src.close()
    counts = pipe.counts if pipe is not None else LineCounts()
    fr = FileReport(directory or "journal", chosen or fmt, counts,
                    "" if counts.total else "no matching journal entries")
    report.files.append(fr)
    return fr


def _feed_with_progress(pipe: Pipeline, text: IO[str], raw: IO[bytes], size: int, name: str) -> None:
    from tqdm import tqdm  # noqa: PLC0415 - only when a terminal shows it

    with tqdm(total=size, unit="B", unit_scale=True, desc=name, file=sys.stderr, leave=False) as bar:
        for chunk in _chunks(text):
            pipe.feed_text(chunk)
            bar.update(raw.tell() - bar.n)
        bar.update(size - bar.n)


def _by(pairs: dict[str, int]) -> dict[str, int]:
    return dict(sorted(pairs.items()))


def summary(report: ScanReport, now: float) -> dict[str, Any]:
    """The JSON document `scan --json` prints (one object)."""
    snap: Snapshot = report.aggregate.snapshot(now)
    replies: dict[str, dict[str, int]] = {"outbound": {}, "inbound": {}}
    enhanced: dict[str, dict[str, int]] = {"outbound": {}, "inbound": {}}
    for (_m, _l, direction, code, enh), n in snap.replies.items():
        replies[direction][code] = replies[direction].get(code, 0) + n
        if enh:
            enhanced[direction][enh] = enhanced[direction].get(enh, 0) + n
    deliveries = dict.fromkeys(DELIVERY_STATUSES, 0)
    for (_m, _l, status), n in snap.deliveries.items():
        deliveries[status] += n
    rejections: dict[str, int] = {}
    by_stage: dict[str, dict[str, int]] = {}
    for (_m, _l, stage, code), n in snap.rejections.items():
        rejections[code] = rejections.get(code, 0) + n
        by_stage.setdefault(stage, {})
        by_stage[stage][code] = by_stage[stage].get(code, 0) + n
    domains: dict[str, dict[str, int]] = {}
    for (domain, direction, klass), n in snap.domains.items():
        row = domains.setdefault(domain, {"outbound": 0, "inbound": 0, "5xx": 0, "4xx": 0})
        row[direction] += n
        if klass in ("4xx", "5xx"):
            row[klass] += n
    top = sorted(
        ((d, r) for d, r in domains.items() if d != OTHER),
        key=lambda dr: -(dr[1]["outbound"] + dr[1]["inbound"]),
    )
    final = deliveries["sent"] + deliveries["bounced"] + deliveries["expired"]
    reasons: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for fr in report.files:
        for reason, n in fr.counts.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
            examples.setdefault(reason, [])
            room = 3 - len(examples[reason])
            examples[reason].extend(fr.counts.examples.get(reason, [])[:room])
    return {
        "lines": sum(fr.counts.total for fr in report.files),
        "parsed": sum(fr.counts.parsed for fr in report.files),
        "ignored": sum(fr.counts.ignored for fr in report.files),
        "unparsed": sum(fr.counts.unparsed for fr in report.files),
        "files": [
            {
                "path": fr.path,
                "format": fr.format,
                "lines": fr.counts.total,
                "unparsed": fr.counts.unparsed,
                **({"warning": fr.warning} if fr.warning else {}),
            }
            for fr in report.files
        ],
        "replies": {d: _by(c) for d, c in replies.items()},
        "enhanced": {d: _by(c) for d, c in enhanced.items()},
        "deliveries": deliveries,
        "bounce_ratio": round(deliveries["bounced"] / final, 6) if final else 0.0,
        "rejections": _by(rejections),
        "rejections_by_stage": {s: _by(c) for s, c in sorted(by_stage.items())},
        "top_domains": [{"domain": d, **r} for d, r in top[:20]],
        "other_domains": domains.get(OTHER, {"outbound": 0, "inbound": 0, "5xx": 0, "4xx": 0}),
        "unparsed_reasons": _by(reasons),
        "unparsed_examples": examples,
        "why": why(report.aggregate, snap),
    }


def why(agg: Aggregate, snap: Snapshot, n: int = 5) -> list[dict[str, Any]]:
    """Per direction and 4xx/5xx code: each reason with its count, share and top offenders."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for (_m, _l, direction, code, reason), k in snap.reasons.items():
        by = groups.setdefault((direction, code), {})
        by[reason] = by.get(reason, 0) + k
    out: list[dict[str, Any]] = []
    for (direction, code), by in sorted(
        groups.items(), key=lambda g: (g[0][0], -sum(g[1].values()), g[0][1])
    ):
        reasons = agg.diagnosis.reason_rows(None, direction, code, by, n)
        out.append({"direction": direction, "code": code, "count": sum(by.values()), "reasons": reasons})
    return out


def render_text(doc: dict[str, Any]) -> str:
    """The human summary: what an operator reads first."""
    out: list[str] = []
    add = out.append
    add(
        f"Lines: {doc['lines']}  (with replies/outcomes {doc['parsed']}, "
        f"nothing to count {doc['ignored']}, not understood {doc['unparsed']})"
    )
    for f in doc["files"]:
        add(f"  {f['path']}: {f['format']}, {f['lines']} lines, {f['unparsed']} not understood")
        if "warning" in f:
            add(f"    WARNING: {f['warning']}")
    d = doc["deliveries"]
    add("")
    add(
        f"Deliveries: sent {d['sent']}  bounced {d['bounced']}  deferred {d['deferred']}  "
        f"expired {d['expired']}   bounce ratio {doc['bounce_ratio']:.2%}"
    )
    for direction, title in (
        ("outbound", "remote servers' replies to us"),
        ("inbound", "our replies to clients"),
    ):
        codes = doc["replies"][direction]
        if codes:
            add(f"Reply codes, {direction} ({title}):")
            add("  " + "  ".join(f"{c}: {n}" for c, n in codes.items()))
            enh = doc["enhanced"][direction]
            if enh:
                add("  enhanced: " + "  ".join(f"{c}: {n}" for c, n in enh.items()))
    if doc["rejections_by_stage"]:
        add("Rejections by our server (stage: code count):")
        for stage, codes in doc["rejections_by_stage"].items():
            add(f"  {stage or '?'}: " + "  ".join(f"{c or '-'}: {n}" for c, n in codes.items()))
    if doc["top_domains"]:
        add("Top remote domains (replies out / in, of which 4xx, 5xx):")
        for row in doc["top_domains"][:10]:
            add(
                f"  {row['domain']}: {row['outbound']} / {row['inbound']}"
                f"  (4xx {row['4xx']}, 5xx {row['5xx']})"
            )
    if doc["why"]:
        add("Why (per code and direction: reason, count, share, top offenders):")
        for row in doc["why"]:
            add(f"  {row['code']} {row['direction']}: {row['count']}")
            for r in row["reasons"]:
                who = "; ".join(
                    kind.replace("_", " ")
                    + "s "
                    + ", ".join(f"{o['value']} ({o['count']})" for o in items[:3])
                    for kind, items in r["offenders"].items()
                    if items
                )
                add(f"    {r['reason']}: {r['count']} ({r['share']:.0%})" + (f"  top {who}" if who else ""))
    if doc["unparsed"]:
        add("Not understood (reason: count, then examples):")
        for reason, n in doc["unparsed_reasons"].items():
            add(f"  {reason}: {n}")
            for ex in doc["unparsed_examples"].get(reason, []):
                add(f"    | {ex[:160]}")
    return "\n".join(out)
