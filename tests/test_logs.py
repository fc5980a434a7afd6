"""configure_logging: JSON lines off a terminal, stdlib records alike, levels, no frame locals."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from logscan.app.logging import configure_logging

# What a parser's frame holds while it works: a raw line with a personal address.
SECRET_LINE = "Nov 29 08:00:01 mx postfix/smtp[1]: to=<alice.secret@example.org>, status=bounced"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("watchdog", "urllib3")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in chatty.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    structlog.get_logger("logscan.daemon").info("started", logs=3, port=9425)
    [record] = records(out)
    assert {k: record[k] for k in ("event", "level", "logger", "logs", "port")} == {
        "event": "started",
        "level": "info",
        "logger": "logscan.daemon",
        "logs": 3,
        "port": 9425,
    }
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_stdlib_library_records_come_out_as_json() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    logging.getLogger("watchdog").warning("inotify watch limit reached for %s", "/var/log")
    [record] = records(out)
    assert record["event"] == "inotify watch limit reached for /var/log"
    assert record["level"] == "warning"
    assert record["logger"] == "watchdog"
    assert record["timestamp"].endswith("Z")


def test_level_filters_both_kinds_and_a_second_call_changes_it() -> None:
    out = io.StringIO()
    configure_logging("warning", stream=out)
    log = structlog.get_logger("logscan.tail")
    log.info("dropped")
    logging.getLogger("urllib3").info("dropped too")
    log.warning("kept")
    assert [r["event"] for r in records(out)] == ["kept"]

    # What SIGHUP does: same stream, lower level, still one handler (no doubled lines).
    configure_logging("debug", stream=out)
    log.debug("now visible")
    logging.getLogger("logscan.tail").debug("stdlib debug visible")
    assert [r["event"] for r in records(out)] == ["kept", "now visible", "stdlib debug visible"]


def test_chatty_libraries_stay_at_info_when_debugging() -> None:
    out = io.StringIO()
    configure_logging("debug", stream=out)
    logging.getLogger("watchdog.observers.inotify_buffer").debug("in-event %s", "IN_MODIFY")
    logging.getLogger("watchdog").info("observer started")
    assert [r["event"] for r in records(out)] == ["observer started"]


def parse_line(line: str) -> None:
    address = line.split("to=<", 1)[1].split(">", 1)[0]
    raise ValueError(f"cannot parse status ({len(address)} chars in address)")


def test_exception_without_frame_locals_structlog() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    try:
        parse_line(SECRET_LINE)
    except ValueError:
        structlog.get_logger("logscan.parsers").exception("parser failed")
    text = out.getvalue()
    [record] = records(out)
    assert record["level"] == "error"
    [exc] = record["exception"]
    assert exc["exc_type"] == "ValueError"
    assert exc["exc_value"] == "cannot parse status (24 chars in address)"
    assert any(frame["name"] == "parse_line" for frame in exc["frames"])
    assert "alice.secret" not in text
    assert '"locals"' not in text  # the key ExceptionDictTransformer adds per frame


def test_exception_without_frame_locals_stdlib() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    try:
        parse_line(SECRET_LINE)
    except ValueError:
        logging.getLogger("watchdog").exception("handler crashed")
    [record] = records(out)
    assert record["exception"][0]["exc_type"] == "ValueError"
    assert "alice.secret" not in out.getvalue()


def test_console_exception_without_frame_locals() -> None:
    out = io.StringIO()
    configure_logging("info", json=False, stream=out)
    try:
        parse_line(SECRET_LINE)
    except ValueError:
        structlog.get_logger("logscan.parsers").exception("parser failed")
    text = out.getvalue()
    assert "Traceback" in text
    assert "parse_line" in text
    assert "alice.secret" not in text


def test_console_text_on_a_terminal() -> None:
    controller, terminal = os.openpty()
    with (
        os.fdopen(terminal, "w", encoding="utf-8") as tty,
        os.fdopen(controller, "rb", buffering=0) as screen,
    ):
        configure_logging("info", stream=tty)
        structlog.get_logger("logscan.daemon").info("started", port=9425)
        shown = screen.read(4096).decode("utf-8")
    assert "started" in shown
    assert "port" in shown
    assert "9425" in shown
    assert not shown.lstrip().startswith("{")


def test_journald_priority_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd sets JOURNAL_STREAM to the device:inode of the stdout it hands the service.
    with (tmp_path / "journal").open("w+", encoding="utf-8") as out:
        info = os.fstat(out.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure_logging("info", stream=out)
        structlog.get_logger("logscan").warning("551 spike", log="postfix")
        logging.getLogger("urllib3").error("alertmanager unreachable")
        out.seek(0)
        lines = out.read().splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<3>"]
    assert json.loads(lines[0][3:])["event"] == "551 spike"


def test_no_prefix_when_journal_stream_is_another_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    out = io.StringIO()
    configure_logging("info", stream=out)
    structlog.get_logger().info("plain")
    assert out.getvalue().startswith("{")


def test_python_warnings_are_logged() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", DeprecationWarning, stacklevel=1)
    [record] = records(out)
    assert record["logger"] == "py.warnings"
    assert "old option" in record["event"]


def test_unknown_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        configure_logging("verbose", stream=io.StringIO())
