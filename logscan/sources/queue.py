"""Mail queue depth, sampled on an interval by a thread of its own (docs/decisions/0017).

Postfix: `postqueue -j` (one JSON object per queued message, with its queue_name), which
asks the running master's showq service, so it works unprivileged (setgid postdrop) and
reads no queue file itself. Exim: `exim -bpc` (one number: every message on the spool).
MailEnable: `*.MAI` message files in the SMTP queue folders. A sample that fails or times
out is counted as an error and leaves no depth at all, so no graph or alert acts on a
stale number.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

POSTFIX_QUEUES: Final = ("active", "deferred", "hold", "incoming", "maildrop")
EXIM_QUEUES: Final = ("all",)
# MailEnable (Windows) keeps one message file per queued message in these folders of its
# Queues directory; the label is the folder path, lowercased, joined with "-".
MAILENABLE_FOLDERS: Final = {
    "smtp-inbound": ("SMTP", "Inbound", "Messages"),
    "smtp-outgoing": ("SMTP", "Outgoing", "Messages"),
}
QUEUES: Final[Mapping[str, tuple[str, ...]]] = {
    "postfix": POSTFIX_QUEUES,
    "exim": EXIM_QUEUES,
    "mailenable": tuple(MAILENABLE_FOLDERS),
}
DEFAULT_COMMANDS: Final[Mapping[str, tuple[str, ...]]] = {
    "postfix": ("postqueue", "-j"),
    "exim": ("exim", "-bpc"),
}
MAX_OUTPUT: Final = 256 << 20  # postqueue -j of a flooded queue: about 300 bytes a message


class QueueError(Exception):
    """One sample that could not be taken; the message says why."""


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """What the exposition shows: the last depths (None after a failed sample) and errors."""

    mta: str
    depths: Mapping[str, int] | None
    errors: int = 0


def parse_postqueue_json(out: bytes) -> dict[str, int]:
    """Messages per queue from `postqueue -j` output; every Postfix queue is present."""
    depths = dict.fromkeys(POSTFIX_QUEUES, 0)
    for raw in out.splitlines():
        if not raw.strip():
            continue
        try:
            name = json.loads(raw)["queue_name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise QueueError(f"postqueue -j: not a queue record: {raw[:120]!r}") from exc
        if name in depths:
            depths[name] += 1
        else:
            raise QueueError(f"postqueue -j: unknown queue {str(name)[:40]!r}")
    return depths


def parse_exim_bpc(out: bytes) -> dict[str, int]:
    """The one number `exim -bpc` prints."""
    text = out.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise QueueError(f"exim -bpc: expected a count, got {text[:120]!r}")
    return {"all": int(text)}


def count_mailenable(root: Path) -> dict[str, int]:
    """`*.MAI` files (any case) in each MailEnable SMTP queue folder under `root`."""
    depths: dict[str, int] = {}
    for label, parts in MAILENABLE_FOLDERS.items():
        folder = root.joinpath(*parts)
        try:
            with os.scandir(folder) as entries:
                depths[label] = sum(1 for e in entries if e.name.upper().endswith(".MAI") and e.is_file())
        except OSError as exc:
            raise QueueError(f"{folder}: {exc.strerror or exc}") from exc
    return depths


def run_command(command: Sequence[str], timeout: float) -> bytes:
    """stdout of `command`; QueueError when it cannot run, fails, times out or says too much."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise QueueError(f"{command[0]}: no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise QueueError(f"{command[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise QueueError(f"{command[0]} exited {done.returncode}: {err[-1][:200] if err else ''}")
    if len(done.stdout) > MAX_OUTPUT:
        raise QueueError(f"{command[0]}: more than {MAX_OUTPUT} bytes of output")
    return done.stdout


@dataclass(slots=True)
class QueueSampler:
    """Samples one MTA's queue every `interval` seconds on a daemon thread of its own.

    Ingestion never waits for it: `status()` only copies the last result under a lock, and
    a slow command is killed after `timeout` seconds.
    """

    mta: str
    interval: float = 30.0
    timeout: float = 10.0
    command: tuple[str, ...] = ()
    directory: str = ""
    on_error: Callable[[str], None] = lambda _msg: None
    _depths: dict[str, int] | None = None
    _errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.mta not in QUEUES:
            raise ValueError(f"no queue sampler for {self.mta!r}")
        if not self.command and self.mta in DEFAULT_COMMANDS:
            self.command = DEFAULT_COMMANDS[self.mta]

    def sample(self) -> dict[str, int]:
        """One reading now (on the caller's thread); raises QueueError."""
        if self.mta == "mailenable":
            return count_mailenable(Path(self.directory))
        out = run_command(self.command, self.timeout)
        return parse_postqueue_json(out) if self.mta == "postfix" else parse_exim_bpc(out)

    def sample_once(self) -> None:
        """Take one reading and publish it, or count the error."""
        try:
            depths: dict[str, int] | None = self.sample()
        except QueueError as exc:
            depths = None
            self.on_error(str(exc))
            with self._lock:
                self._errors += 1
        with self._lock:
            self._depths = depths

    def status(self) -> QueueStatus:
        with self._lock:
            depths = None if self._depths is None else dict(self._depths)
            return QueueStatus(self.mta, depths, self._errors)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"queue-{self.mta}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # The command has its own timeout; waiting longer would only delay shutdown.
            self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)
