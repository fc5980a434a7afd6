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
_BULK: Final = {"postfix": ("logscan.parsers.postfix_bulk", "PostfixBulk")}


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
