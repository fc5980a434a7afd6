"""Daemon state on disk: one JSON file, replaced atomically so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

STATE_VERSION: Final = 1

_encoder = msgspec.json.Encoder()


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


def load_state(path: Path) -> LoadedState:
    """Read the state file; never raises for a bad file; a corrupt one is kept as `<path>.corrupt-<n>`."""
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
        return LoadedState(None, _set_aside(path, f"corrupt: {exc}"))
    if not isinstance(doc, dict) or "version" not in doc:
        return LoadedState(None, _set_aside(path, "corrupt: not a logscan state document"))
    if doc["version"] != STATE_VERSION:
        # A newer daemon's file is not corrupt; keep it in place so a downgrade can be undone.
        return LoadedState(None, f"unsupported version {doc['version']}")
    data = doc.get("data")
    if not isinstance(data, dict):
        return LoadedState(None, _set_aside(path, "corrupt: 'data' is not an object"))
    return LoadedState(data, "")


def _set_aside(path: Path, problem: str) -> str:
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
