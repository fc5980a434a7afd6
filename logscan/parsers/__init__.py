"""Pure parsers, one per MTA: a line in, Events or an Unparsed reason out."""

from __future__ import annotations

from importlib import import_module
from typing import Final

from logscan.parsers.base import Parser, ParserOptions

FORMATS: Final = ("postfix", "exim", "mailenable")
_CLASSES: Final = {
    "postfix": ("logscan.parsers.postfix", "PostfixParser"),
    "exim": ("logscan.parsers.exim", "EximParser"),
    "mailenable": ("logscan.parsers.mailenable", "MailEnableParser"),
}


def make_parser(fmt: str, options: ParserOptions) -> Parser:
    """A fresh parser for `fmt` (one of FORMATS)."""
    module, cls = _CLASSES[fmt]
    parser: Parser = getattr(import_module(module), cls)(options)
    return parser
