"""Pure parsers, one per MTA: a line in, Events or an Unparsed reason out."""

from __future__ import annotations

from importlib import import_module
from typing import Final

from logscan.parsers.base import BulkReader, Parser, ParserOptions

FORMATS: Final = ("postfix", "exim", "mailenable")
_CLASSES: Final = {
    "postfix": ("logscan.parsers.postfix", "PostfixParser"),
    "exim": ("logscan.parsers.exim", "EximParser"),
    "mailenable": ("logscan.parsers.mailenable", "MailEnableParser"),
}

# Formats with a bulk reader (docs/decisions/0008-bulk-scan.md): it reads many lines at once
# and shares its parser's state, so it is made from the parser.
_BULK: Final = {
    "postfix": ("logscan.parsers.postfix_bulk", "PostfixBulk"),
    "exim": ("logscan.parsers.exim_bulk", "EximBulk"),
    "mailenable": ("logscan.parsers.mailenable_bulk", "MailEnableBulk"),
}
# The optional C extension behind each bulk reader (setup.py builds it where a compiler exists).
C_SCANNERS: Final = {
    "postfix": "logscan.parsers._postfix_scan",
    "exim": "logscan.parsers._exim_scan",
    "mailenable": "logscan.parsers._mailenable_scan",
}
# Formats whose bulk reader steps aside without its C extension (the Python one would be slower
# than parse() there: docs/decisions/0019-mailenable-bulk.md): their lines then go one by one.
_WITHOUT_C: Final = {"mailenable": "line by line"}


def make_parser(fmt: str, options: ParserOptions) -> Parser:
    """A fresh parser for `fmt` (one of FORMATS)."""
    module, cls = _CLASSES[fmt]
    parser: Parser = getattr(import_module(module), cls)(options)
    return parser


def bulk_reader_of(parser: Parser) -> BulkReader | None:
    """A bulk reader sharing `parser`'s state, or None for formats read line by line."""
    where = _BULK.get(parser.mta)
    if where is None:
        return None
    reader: BulkReader = getattr(import_module(where[0]), where[1])(parser)
    return reader


def scan_paths() -> dict[str, str]:
    """Per format, the path its lines take: "C", "Python bulk" (no compiler at install) or "line by line"."""
    paths = {}
    for fmt in FORMATS:
        if fmt not in _BULK:
            paths[fmt] = "line by line"
            continue
        try:
            import_module(C_SCANNERS[fmt])
        except (ImportError, KeyError):
            paths[fmt] = _WITHOUT_C.get(fmt, "Python bulk")
        else:
            paths[fmt] = "C"
    return paths


def scan_paths_text() -> str:
    """scan_paths() in one line, for --version and the landing page."""
    return ", ".join(f"{fmt}: {path}" for fmt, path in scan_paths().items())
