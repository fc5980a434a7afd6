"""Logging setup: structlog for logscan, stdlib records of libraries through the same pipeline."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LEVELS", "configure_logging"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# syslog priorities for journald's "<N>" line prefix (sd-daemon(3)).
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}

# At debug level watchdog logs every inotify event: on a busy mail server, a flood.
_CHATTY_LIBRARIES = ("watchdog", "urllib3")


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so that a second call replaces it."""


class _JournalPrefix:
    """Prefix each rendered line with its syslog priority, which journald turns into PRIORITY=."""

    def __init__(self, renderer: structlog.processors.JSONRenderer) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        priority = _PRIORITY.get(str(event_dict.get("level", name)), 6)
        line = self._renderer(logger, name, event_dict)
        # json.dumps, the serializer in use, returns str; bytes come only from e.g. orjson.
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        return f"<{priority}>{text}"


def _on_journal(stream: TextIO) -> bool:
    """True when systemd connected `stream` to journald ($JOURNAL_STREAM is its device:inode)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # StringIO and friends have no fileno
        return False
    return f"{info.st_dev}:{info.st_ino}" == f"{device}:{inode}"


def _renderer(json: bool, journal: bool, colors: bool) -> Processor:
    if not json:
        # plain_traceback, named explicitly: with rich installed the default shows frame locals.
        return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    renderer = structlog.processors.JSONRenderer()
    return _JournalPrefix(renderer) if journal else renderer


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    journal: bool | None = None,
) -> None:
    """Route structlog and stdlib logging to `stream` (default stdout) as JSON lines or console text.

    json=None picks console text on a terminal, JSON otherwise; journal=None adds journald
    priority prefixes when $JOURNAL_STREAM names the stream. Call again to change the level.
    """
    try:
        threshold = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    out = sys.stdout if stream is None else stream
    tty = out.isatty()
    json = not tty if json is None else json
    journal = json and (_on_journal(out) if journal is None else journal)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        # Not structlog's dict_tracebacks: its transformer shows frame locals, and those hold
        # raw log lines with email addresses.
        final.append(structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)))
    final.append(_renderer(json, journal, colors=tty))

    handler = _Handler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(threshold, logging.INFO))
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: level and output live in the stdlib handler, so a reload takes effect
        # anyway, but cached loggers would slip past capture_logs() in other tests.
        cache_logger_on_first_use=False,
    )
