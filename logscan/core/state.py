"""Daemon state on disk: one JSON file, replaced atomically so a crash never leaves half a file.

The file's whole tree is checked against a msgspec schema (`DaemonState`) before any of it is
used: a wrong type anywhere, a negative count or a non-finite number sets the file aside.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from logscan.sources.identity import checkpoint_schema

STATE_VERSION: Final = 1

_encoder = msgspec.json.Encoder()

# A count never goes below zero; a float is finite (JSON has no NaN, but 1e999 decodes to inf).
Count = Annotated[int, msgspec.Meta(ge=0)]
Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
FiniteCount = Annotated[float, msgspec.Meta(ge=0, le=1e300)]


class _Top(msgspec.Struct):
    sketch: dict[str, Count]
    labelled: list[str]


class AggregateState(msgspec.Struct):
    """What Aggregate.to_dict writes (logscan.core.aggregate)."""

    version: Literal[1]
    replies: list[tuple[str, str, str, str, str, Count]]
    deliveries: list[tuple[str, str, str, Count]]
    rejections: list[tuple[str, str, str, str, Count]]
    delays: list[tuple[str, str, list[Count], FiniteCount, Count]]
    domains: list[tuple[str, str, str, Count]]
    lines: list[tuple[str, str, Count]]
    unparsed: list[tuple[str, str, Count]]
    last_event: dict[str, Finite]
    top: _Top
    minutes: dict[str, list[tuple[int, Count, Count, Count]]]


class _Series(msgspec.Struct):
    folded: int
    hits: list[tuple[int, Count]]
    totals: list[tuple[int, Count]]
    baseline: FiniteCount
    state: Literal["inactive", "pending", "firing"]
    pending_since: Finite
    fired_at: Finite
    peak: tuple[FiniteCount, FiniteCount, FiniteCount]


class _AlertLog(msgspec.Struct):
    next_min: int
    series: list[tuple[str, str, str, _Series]]
    candidates: list[tuple[str, str, dict[str, Count]]] = msgspec.field(default_factory=list)


class AlertState(msgspec.Struct):
    """What AlertEngine.to_dict writes (logscan.core.alerts)."""

    version: Literal[1]
    late: Count
    rules: dict[str, list[str | bool | int | float | None]]
    logs: dict[str, _AlertLog]


class DaemonState(msgspec.Struct):
    """The daemon's state: every log's position and every counter, saved together."""

    version: Literal[1]
    aggregate: AggregateState
    # Each log's checkpoint has the schema of its source (identity.checkpoint_schema), checked below.
    logs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    formats: dict[str, str] = msgspec.field(default_factory=dict)
    alerts: AlertState | None = None
    saved_at: Finite = 0.0


@dataclass(frozen=True, slots=True)
class LoadedState:
    """What load_state found: `data` or None, and `problem` ("" ok, "missing", or a reason)."""

    data: dict[str, Any] | None
    problem: str


def save_state(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` atomically: temp file in the same folder, fsync, os.replace, fsync folder."""
    path = Path(path)
    blob = _encoder.encode({"version": STATE_VERSION, "data": dict(data)})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    tmp.replace(path)
    # The rename is only durable once the folder entry is on disk.
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_state(path: Path, schema: type[msgspec.Struct] | None = None) -> LoadedState:
    """Read the state file; never raises for a bad file; a corrupt one is kept as `<path>.corrupt-<n>`.

    With `schema`, `data` must convert to it (strictly); it is returned as plain JSON types.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return LoadedState(None, "missing")
    except OSError as exc:
        # Unreadable is not corrupt: leave the file where it is for the operator.
        return LoadedState(None, f"unreadable: {exc.strerror or exc}")
    try:
        doc = msgspec.json.decode(blob)
    except msgspec.DecodeError as exc:
        return LoadedState(None, set_aside(path, f"corrupt: {exc}"))
    if not isinstance(doc, dict) or "version" not in doc:
        return LoadedState(None, set_aside(path, "corrupt: not a logscan state document"))
    if doc["version"] != STATE_VERSION:
        # A newer daemon's file is not corrupt; keep it in place so a downgrade can be undone.
        return LoadedState(None, f"unsupported version {doc['version']}")
    data = doc.get("data")
    if not isinstance(data, dict):
        return LoadedState(None, set_aside(path, "corrupt: 'data' is not an object"))
    if schema is not None:
        try:
            data = msgspec.to_builtins(msgspec.convert(data, schema, strict=True))
            for saved in (data.get("logs") or {}).values():
                try:
                    msgspec.convert(saved, checkpoint_schema(saved), strict=True)
                except msgspec.ValidationError as exc:
                    where = "`$.logs[...]"  # as msgspec names a dict value
                    raise msgspec.ValidationError(str(exc).replace("`$", where)) from exc
        except msgspec.ValidationError as exc:
            # msgspec names the place: "Expected `int`, got `str` - at `$.logs.mx1.files[0].offset`"
            return LoadedState(None, set_aside(path, f"corrupt: {str(exc).replace('`$', '`data')}"))
    return LoadedState(data, "")


def set_aside(path: Path, problem: str) -> str:
    """Move a file that cannot be used to `<path>.corrupt-<n>`; `problem` plus where it went."""
    n = 1
    while True:
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists():
            break
        n += 1
    try:
        path.replace(target)
    except OSError as exc:
        return f"{problem} (could not set it aside: {exc.strerror or exc})"
    return f"{problem} (kept as {target.name})"
