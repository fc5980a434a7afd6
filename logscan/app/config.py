"""The TOML config file: typed, validated at load, errors that name the file and the key."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from logscan.core.alerts import DEFAULT_RULES, Rule
from logscan.outputs.receivers import Receiver

Format = Literal["auto", "postfix", "exim", "mailenable"]
DEFAULT_PATH = Path("/etc/logscan/logscan.toml")
# `logscan run` without a config file: /var/log/mail.log, or the journal where that file does not
# exist (app/sources.py journal_instead), as the shipped config/logscan.toml does.
DEFAULT_CONFIG = '[[logs]]\nname = "mail"\npath = "/var/log/mail.log"\n'
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


class Server(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    listen: str = "127.0.0.1:9551"
    web_config_file: str = ""
    instance: str = ""


class State(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    dir: str = "/var/lib/logscan"
    save_interval: float = 15.0


class Daemon(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    poll_interval: float = 2.0
    polling_observer: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: str = ""
    top_domains: int = 50
    bounce_ratio_windows: list[int] = msgspec.field(default_factory=lambda: [300, 3600])


class Log(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    path: str = ""
    format: Format = "auto"
    start_at: Literal["end", "beginning"] = "end"
    timezone: str = ""
    # Where lines come from: "file" follows `path` (a local path or glob, or
    # smb://server/share/dir/glob with `credentials_file`); "journal" reads the systemd journal
    # (the local one, or `journal_directory`), entries whose SYSLOG_IDENTIFIER matches one of
    # `identifiers` (globs; [] = postfix* for postfix, exim* for exim, both for auto).
    source: Literal["file", "journal"] = "file"
    journal_directory: str = ""
    identifiers: list[str] = msgspec.field(default_factory=list)
    credentials_file: str = ""


class Alerts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    default_rules: bool = True
    rules: list[Rule] = msgspec.field(default_factory=list)
    receivers: list[Receiver] = msgspec.field(default_factory=list)


# -- [queue]: mail queue depth (docs/decisions/0017) ----------------------------------------------
class Queue(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mta: Literal["", "postfix", "exim", "mailenable"] = ""  # "" = no queue sampling
    interval: float = 30.0
    timeout: float = 10.0
    command: list[str] = msgspec.field(default_factory=list)  # default: postqueue -j / exim -bpc
    directory: str = ""  # MailEnable: its Queues folder

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("queue: interval and timeout must be > 0 seconds")
        if self.mta == "mailenable" and not Path(self.directory).is_absolute():
            raise ValueError("queue: mta = mailenable needs directory = the absolute Queues path")


# ----------------------------------------------------------------------------------------------


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    logs: list[Log]
    server: Server = msgspec.field(default_factory=Server)
    state: State = msgspec.field(default_factory=State)
    daemon: Daemon = msgspec.field(default_factory=Daemon)
    alerts: Alerts = msgspec.field(default_factory=Alerts)
    queue: Queue = msgspec.field(default_factory=Queue)


def _key(msg: str) -> str:
    # msgspec says "... - at `$.logs[0].format`"; operators think in TOML keys.
    return re.sub(r"`\$\.?([^`]*)`", lambda m: f"`{m.group(1) or '(top level)'}`", msg)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate TOML text; raises ConfigError naming `source` and the offending key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        cfg = msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_key(str(exc))}") from exc
    problems = list(_check(cfg))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate the config file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from exc
    return parse_config(text, str(path))


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None (machine local time) for ""."""
    return ZoneInfo(name) if name else None


def _check(cfg: Config) -> list[str]:
    """Rules msgspec's types cannot say."""
    out: list[str] = []
    if not cfg.logs:
        out.append("key `logs`: at least one [[logs]] entry is needed")
    seen: set[str] = set()
    for i, log in enumerate(cfg.logs):
        if not _NAME.match(log.name):
            out.append(f"key `logs[{i}].name`: {log.name!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        if log.name in seen:
            out.append(f"key `logs[{i}].name`: {log.name!r} is used twice")
        seen.add(log.name)
        if log.source == "file" and not is_smb(log.path):
            out.extend(_check_path(log.path, f"logs[{i}].path"))
        out.extend(_check_zone(log.timezone, f"logs[{i}].timezone"))
        out.extend(_check_source(log, f"logs[{i}]"))
    out.extend(_check_zone(cfg.daemon.timezone, "daemon.timezone"))
    if cfg.daemon.poll_interval <= 0:
        out.append("key `daemon.poll_interval`: must be > 0 seconds")
    if cfg.state.save_interval <= 0:
        out.append("key `state.save_interval`: must be > 0 seconds")
    if not 0 <= cfg.daemon.top_domains <= 1000:
        out.append("key `daemon.top_domains`: must be between 0 and 1000")
    if not cfg.daemon.bounce_ratio_windows or any(
        w < 60 or w % 60 for w in cfg.daemon.bounce_ratio_windows
    ):
        out.append("key `daemon.bounce_ratio_windows`: whole minutes in seconds (60, 300, 3600 ...)")
    names = [r.name for r in cfg.alerts.receivers]
    if len(set(names)) != len(names):
        out.append("key `alerts.receivers`: receiver names must be unique")
    rule_names = [r.name for r in cfg.alerts.rules]
    if cfg.alerts.default_rules:
        rule_names += [r.name for r in DEFAULT_RULES]
    if len(set(rule_names)) != len(rule_names):
        out.append("key `alerts.rules`: rule names must be unique (the default rules count too)")
    log_names = {log.name for log in cfg.logs}
    for i, rule in enumerate(cfg.alerts.rules):
        unknown = sorted(set(rule.logs or ()) - log_names)
        if unknown:
            out.append(f"key `alerts.rules[{i}].logs`: no [[logs]] named {', '.join(unknown)}")
    from logscan.outputs.http import parse_listen  # noqa: PLC0415 - web imports heavy modules; keep config light

    try:
        parse_listen(cfg.server.listen)
    except ValueError as exc:
        out.append(f"key `server.listen`: {exc}")
    return out


def is_smb(path: str) -> bool:
    """True for a log on a Windows/Samba share: smb://server/share/dir/file-or-glob."""
    return path.startswith("smb://")


def _check_source(log: Log, key: str) -> list[str]:
    """The issue-13 keys: journal and SMB logs need their own keys and no others."""
    out: list[str] = []
    if log.source == "journal":
        if log.path:
            out.append(f"key `{key}.path`: a journal log has no path (use journal_directory)")
        if log.format == "mailenable":
            out.append(f"key `{key}.format`: MailEnable does not log to the journal")
        if log.journal_directory and not Path(log.journal_directory).is_absolute():
            out.append(f"key `{key}.journal_directory`: {log.journal_directory!r} must be an absolute path")
        if log.credentials_file:
            out.append(f"key `{key}.credentials_file`: only for smb:// paths")
        return out
    if log.journal_directory or log.identifiers:
        out.append(f"key `{key}`: journal_directory and identifiers need source = \"journal\"")
    if is_smb(log.path):
        parts = log.path[len("smb://"):].split("/")
        if len(parts) < 3 or not all(parts):
            out.append(f"key `{key}.path`: {log.path!r} must be smb://server/share/folder.../file-or-glob")
        if not log.credentials_file or not Path(log.credentials_file).is_absolute():
            out.append(f"key `{key}.credentials_file`: an smb:// path needs the absolute path of a "
                       "credentials file (username=, password=, optional domain=; mode 0600)")
    elif log.credentials_file:
        out.append(f"key `{key}.credentials_file`: only for smb:// paths")
    return out


def _check_path(path: str, key: str) -> list[str]:
    """What the follower cannot run (logscan.sources.logfiles): check-config must refuse it too."""
    if not Path(path).is_absolute():
        return [f"key `{key}`: {path!r} must be an absolute path"]
    folder, name = os.path.split(path)
    if any(c in folder for c in "*?["):
        return [f"key `{key}`: {path!r}: wildcards are only allowed in the file name, not in the folder"]
    if not name or name in {".", ".."}:
        return [f"key `{key}`: {path!r} names a folder; give the log file (or a file-name glob)"]
    if "\0" in path:
        return [f"key `{key}`: {path!r} holds a NUL byte"]
    return []


def _check_zone(name: str, key: str) -> list[str]:
    if not name:
        return []
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return [f"key `{key}`: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"]
    return []
