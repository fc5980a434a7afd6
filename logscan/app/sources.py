"""Which source a configured log reads: a local file (Follower), the journal, or an SMB share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog

from logscan.app.config import Log, is_smb
from logscan.sources.follower import Follower
from logscan.sources.journal import JournalSource, default_identifiers, journal_exists

log = structlog.get_logger("logscan.daemon")

MAIL_LOG = "/var/log/mail.log"


class Source(Protocol):
    """What the daemon needs of a source: Follower's public face."""

    name: str

    @property
    def up(self) -> bool: ...
    @property
    def error(self) -> str: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def rotations(self) -> int: ...
    @property
    def lag_bytes(self) -> int: ...
    @property
    def current_path(self) -> str: ...
    def watch_dirs(self) -> set[str]: ...
    def drain_notes(self) -> list[tuple[str, dict[str, Any]]]: ...
    @property
    def epoch(self) -> int: ...
    def open(self) -> None: ...
    def saved(self) -> None: ...
    def poll(self, max_bytes: int = ..., *, blocks: bool = ...) -> list[bytes]: ...
    def checkpoint(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def make_source(cfg: Log, saved: Mapping[str, Any] | None) -> Source:
    """The source of one [[logs]] entry, resuming at `saved` (its last checkpoint) if given."""
    if cfg.source == "journal":
        return JournalSource(cfg.name, directory=cfg.journal_directory,
                             identifiers=cfg.identifiers or default_identifiers(cfg.format),
                             start_at=cfg.start_at, saved=saved)
    if is_smb(cfg.path):
        from logscan.sources.smb import SmbSource  # noqa: PLC0415 - smbprotocol only when a share is used

        return SmbSource(cfg.name, cfg.path, credentials_file=cfg.credentials_file,
                         start_at=cfg.start_at, saved=saved)
    # The daemon keeps a finished file open until a save has it read to the end (crash safety).
    return Follower(cfg.name, cfg.path, start_at=cfg.start_at, saved=saved, hold_until_saved=True)


def journal_instead(cfg: Log) -> Log:
    """The shipped default reads /var/log/mail.log; on a server without it and with a journal
    (a fresh Debian 12 / Ubuntu 24.04 without rsyslog), read the journal instead."""
    if cfg.source != "file" or cfg.path != MAIL_LOG or Path(MAIL_LOG).exists() or not journal_exists():
        return cfg
    from msgspec import structs  # noqa: PLC0415

    return structs.replace(cfg, source="journal", path="")


def source_of(lcfg: Log, saved: Mapping[str, Any] | None) -> Source:
    """The daemon's source of one configured log: the journal instead of a missing default
    /var/log/mail.log (journal_instead), resuming at `saved` if given."""
    cfg = journal_instead(lcfg)
    if cfg.source == "journal":
        where = cfg.journal_directory or "(local journal)"
        log.info("log_source", log=lcfg.name, source="journal", directory=where)
    return make_source(cfg, saved)
