"""The `logscan` command: run, scan, parse, check-config."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from logscan import __version__
from logscan.app.config import DEFAULT_PATH, ConfigError, load_config
from logscan.events import Unparsed
from logscan.parsers import FORMATS, make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.detect import detect

if TYPE_CHECKING:
    from logscan.outputs.openmetrics_backfill import Timeline

# Exit codes (documented in the README): 0 fine, 1 failed at run time, 2 bad usage or config.
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

EPILOG = """exit codes: 0 success; 1 runtime failure (unreadable file, port in use, ...);
2 bad command line or invalid config file."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="logscan",
        description="SMTP replies and delivery outcomes from Postfix, Exim and MailEnable logs, "
        "as Prometheus metrics, with built-in 551 spike alerts.",
        epilog=EPILOG,
    )
    ap.add_argument(
        "--version", action=_Version, nargs=0, help="show the version and each format's scan path (C or not)"
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon: follow the configured logs, serve /metrics, alert")
    run.add_argument(
        "--config", type=Path, default=DEFAULT_PATH, help=f"config file (default {DEFAULT_PATH})"
    )

    scan = sub.add_parser(
        "scan", help="read whole log files (plain or .gz) and print a summary", epilog=EPILOG
    )
    scan.add_argument("files", nargs="*", type=Path, metavar="FILE")
    scan.add_argument("--journal", action="store_true",
                      help="read the systemd journal (Postfix/Exim entries) instead of files")
    scan.add_argument("--journal-directory", default="", metavar="DIR",
                      help="with --journal: a directory of journal files (e.g. from systemd-journal-remote)")
    scan.add_argument("--since", default="",
                      help="with --journal: journalctl --since time, e.g. --since=-1h or --since=2026-12-01")
    scan.add_argument("--format", choices=("auto", *FORMATS), default="auto", help="default: auto")
    scan.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    scan.add_argument(
        "--alerts",
        action="store_true",
        help="replay the alert rules on the lines' own timestamps and list every alert with start and end",
    )
    scan.add_argument("--config", type=Path, help="take alert rules and time zone from this config file")
    scan.add_argument("--timezone", default="", help="IANA zone of timestamps without one (default: local)")
    scan.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr for big inputs (auto: when stderr is a terminal)",
    )

    # History for Prometheus (README "Backfill history").
    scan.add_argument(
        "--openmetrics",
        type=Path,
        metavar="OUT",
        help="also write the daemon's series over the logs' event time, one sample a minute, as "
        "OpenMetrics for `promtool tsdb create-blocks-from openmetrics` (give files oldest first)",
    )
    scan.add_argument(
        "--log-name",
        default="",
        metavar="NAME",
        help="the log label of every file (default: each file's name); with --openmetrics, the "
        "[[logs]] name the daemon uses, so history and live series are the same series",
    )
    scan.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --openmetrics: a label on every series, e.g. job=logscan instance=mx1 (repeatable)",
    )

    parse = sub.add_parser(
        "parse", help="show what each line yields: parser, every field, or why it was not understood"
    )
    parse.add_argument("line", nargs="?", help="one log line (default: read lines from stdin)")
    parse.add_argument("--format", choices=("auto", *FORMATS), default="auto")
    parse.add_argument("--timezone", default="")
    parse.add_argument("--json", action="store_true", help="one JSON object per line")

    check = sub.add_parser("check-config", help="validate the config file; exit 2 when invalid")
    check.add_argument("--config", type=Path, default=DEFAULT_PATH)
    return ap


class _Version(argparse.Action):
    """--version, with the path each format's lines take: C scanner or not (docs/decisions/0008)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from logscan.core.aggregate import paths_text  # noqa: PLC0415 - only --version asks

        print(f"logscan {__version__} ({paths_text()})")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_USAGE
    try:
        if args.command == "scan":
            return cmd_scan(args)
        if args.command == "parse":
            return cmd_parse(args)
        if args.command == "check-config":
            return cmd_check(args)
        from logscan.app.daemon import run_daemon  # noqa: PLC0415 - daemon pulls in watchdog, HTTP

        return run_daemon(args.config)
    except ConfigError as exc:
        print(f"logscan: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if cfg.server.web_config_file:
        from logscan.outputs.http import WebConfigError, load_web_config  # noqa: PLC0415

        try:
            load_web_config(Path(cfg.server.web_config_file))
        except WebConfigError as exc:
            print(f"logscan: invalid web config: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(f"{args.config}: OK ({len(cfg.logs)} logs, listen {cfg.server.listen})")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    from logscan.app.scan import ScanError, ScanReport, render_text, scan_file, summary  # noqa: PLC0415

    tz_name = args.timezone
    rules_cfg = None
    if args.config is not None:
        cfg = load_config(args.config)
        tz_name = tz_name or cfg.daemon.timezone
        rules_cfg = cfg.alerts
    report = ScanReport()
    timeline = None
    if args.openmetrics is not None:
        from logscan.outputs.openmetrics_backfill import Timeline  # noqa: PLC0415

        timeline = Timeline(
            top_domains=cfg.daemon.top_domains if args.config is not None else 50,
            windows=cfg.daemon.bounce_ratio_windows if args.config is not None else (300, 3600),
            labels=_labels(args.label),
        )
        report = ScanReport(aggregate=timeline)
    recorder = None
    if args.alerts:
        from logscan.app.alerting import Replayer  # noqa: PLC0415

        recorder = Replayer.from_config(rules_cfg)
    progress = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    failed = False
    if args.journal == bool(args.files):
        print("logscan: scan FILE... or scan --journal, one of the two", file=sys.stderr)
        return EXIT_USAGE
    if args.journal:
        from logscan.app.scan import scan_journal  # noqa: PLC0415

        try:
            scan_journal(report, args.format, directory=args.journal_directory, since=args.since,
                         observers=(recorder,) if recorder else ())
        except ScanError as exc:
            print(f"logscan: {exc}", file=sys.stderr)
            failed = True
    for path in args.files:
        try:
            scan_file(
                path,
                args.format,
                report,
                tz_name=tz_name,
                progress=progress,
                observers=(recorder,) if recorder else (),
                log_name=args.log_name,
                chunk_chars=64 << 10 if timeline is not None else 1 << 20,
            )
        except ScanError as exc:
            print(f"logscan: {exc}", file=sys.stderr)
            failed = True
    if timeline is not None and not failed:
        failed = not _write_openmetrics(timeline, args.openmetrics)
    doc = summary(report, now=time.time())
    if recorder is not None:
        doc["alerts"] = recorder.finish()
    for fr in report.files:
        if fr.warning:
            print(f"logscan: warning: {fr.path}: {fr.warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, sort_keys=False))
    else:
        from logscan.app.alerting import render_alerts  # noqa: PLC0415

        print(render_text(doc))
        if recorder is not None:
            print(render_alerts(doc["alerts"]))
    return EXIT_FAIL if failed else EXIT_OK


def _labels(pairs: list[str]) -> dict[str, str]:
    """--label KEY=VALUE options; a bad one is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier() or key.startswith("__"):
            raise SystemExit(f"logscan: --label wants KEY=VALUE with a Prometheus label name, got {pair!r}")
        out[key] = value
    return out


def _write_openmetrics(timeline: Timeline, out: Path) -> bool:
    """Write the recorded series to `out`; False (and a message) when it cannot."""
    timeline.finish()
    try:
        with out.open("w", encoding="utf-8") as f:
            samples = timeline.write(f)
    except OSError as exc:
        print(f"logscan: {out}: {exc.strerror or exc}", file=sys.stderr)
        return False
    span = (
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(timeline.times[0]))} to "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timeline.times[-1]))
        if timeline.times
        else "no events"
    )
    print(f"logscan: {out}: {samples} samples of {len(timeline.series)} series, {span}", file=sys.stderr)
    if timeline.late:
        print(
            f"logscan: warning: {timeline.late} events older than ones before them were counted in a "
            "later minute: give rotated files oldest first",
            file=sys.stderr,
        )
    return True


def cmd_parse(args: argparse.Namespace) -> int:
    from logscan.app.config import zone  # noqa: PLC0415

    lines = [args.line] if args.line is not None else (ln.rstrip("\r\n") for ln in sys.stdin)
    options = ParserOptions(log="parse", tz=zone(args.timezone), reference_time=time.time())
    parsers = {fmt: make_parser(fmt, options) for fmt in FORMATS}
    for line in lines:
        fmt = args.format if args.format != "auto" else (detect([line]).format or "")
        tried = [fmt] if fmt else list(FORMATS)
        for name in tried:
            result = parsers[name].parse(line)
            doc: dict[str, object] = {"parser": name}
            if isinstance(result, Unparsed):
                doc.update(result="unparsed", reason=result.reason, detail=result.detail)
            elif not result:
                doc.update(result="ignored", why="understood; states no SMTP reply or delivery outcome")
            else:
                doc.update(result="parsed", events=[msgspec.structs.asdict(ev) for ev in result])
            print(json.dumps(doc) if args.json else _render_parse(line, doc))
    return EXIT_OK


def _render_parse(line: str, doc: dict[str, object]) -> str:
    out = [f"line: {line[:200]}", f"  parser: {doc['parser']}  result: {doc['result']}"]
    if doc["result"] == "unparsed":
        out.append(f"  reason: {doc['reason']}" + (f" ({doc['detail']})" if doc["detail"] else ""))
    elif doc["result"] == "ignored":
        out.append(f"  {doc['why']}")
    else:
        events = doc["events"]
        assert isinstance(events, list)
        for i, ev in enumerate(events, 1):
            out.append(f"  event {i}:")
            out.extend(f"    {k}: {v}" for k, v in ev.items() if v not in ("", None))
    return "\n".join(out)
