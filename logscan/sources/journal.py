"""Follow the systemd journal: mail entries as syslog-shaped lines, exactly once by cursor.

Design (docs/decisions/0014-journal-reader.md): the real `journalctl --output=json --follow`
runs as a child process; each entry whose SYSLOG_IDENTIFIER matches is rendered as
`<RFC 3339 __REALTIME_TIMESTAMP> host ident[pid]: MESSAGE`, a shape the parsers already read
(no year guessing). The checkpoint is the cursor of the last entry poll() handed out, matched
or not, so a restart resumes right after it. A cursor whose entry the journal has vacuumed
away is noticed before following; the source resumes at the oldest entry after it and counts
a gap when entries may have been lost.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec

from logscan.sources.polled import PolledSource

JOURNALCTL: Final = "journalctl"
CHECKPOINT_VERSION: Final = 1
DEFAULT_IDENTIFIERS: Final = {"postfix": ("postfix*",), "exim": ("exim*",)}
# Everything else journalctl would print is dropped at the source: JSON parsing is the cost.
_FIELDS: Final = "MESSAGE,SYSLOG_IDENTIFIER,SYSLOG_PID,_PID,_HOSTNAME"
_READ: Final = 1 << 16
_LOCAL_DIRS: Final = ("/var/log/journal", "/run/log/journal")


def default_identifiers(fmt: str) -> tuple[str, ...]:
    """SYSLOG_IDENTIFIER globs of a format: postfix* (every syslog_name), exim*; auto takes both."""
    return DEFAULT_IDENTIFIERS.get(fmt, DEFAULT_IDENTIFIERS["postfix"] + DEFAULT_IDENTIFIERS["exim"])


def journal_exists(directory: str = "") -> bool:
    """True when there is a journal to read: the directory given, or the local persistent/volatile one."""
    dirs = (directory,) if directory else _LOCAL_DIRS
    return any(Path(d).is_dir() and any(Path(d).rglob("*.journal")) for d in dirs)


def render(entry: Mapping[str, Any]) -> bytes | None:
    """One journal entry as an RFC 3339 syslog line; None when it has no message or time."""
    msg = _bytes(entry.get("MESSAGE"))
    usec = entry.get("__REALTIME_TIMESTAMP")
    if msg is None or not isinstance(usec, str) or not usec.isdigit():
        return None
    sec, frac = divmod(int(usec), 1_000_000)
    stamp = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    host = _bytes(entry.get("_HOSTNAME")) or b"localhost"
    ident = _bytes(entry.get("SYSLOG_IDENTIFIER")) or b"unknown"
    pid = _bytes(entry.get("SYSLOG_PID")) or _bytes(entry.get("_PID"))
    tag = ident + b"[" + pid + b"]" if pid else ident
    # A multi-line message would split into lines without a prefix: keep it one line.
    msg = msg.replace(b"\n", b" ").rstrip(b"\r")
    return f"{stamp}.{frac:06d}+00:00 ".encode() + host.replace(b" ", b"_") + b" " + tag + b": " + msg


def _bytes(value: Any) -> bytes | None:
    # journalctl's JSON gives a field as a string, as an array of bytes when it is not valid
    # UTF-8 or holds control characters, and as an array of those when the field repeats.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list) and value and all(isinstance(b, int) for b in value):
        try:
            return bytes(value)
        except ValueError:
            return None
    if isinstance(value, list) and value:
        return _bytes(value[0])
    return None


def _cursor_seq(cursor: str) -> tuple[str, int] | None:
    """(seqnum id, seqnum) of a cursor `s=..;i=..;...`; None when it has none."""
    parts = dict(p.split("=", 1) for p in cursor.split(";") if "=" in p)
    try:
        return parts["s"], int(parts["i"], 16)
    except (KeyError, ValueError):
        return None


class JournalSource(PolledSource):
    """Follows SYSLOG_IDENTIFIER-selected entries of the local journal or a journal directory.

    The same public face as Follower: poll(), checkpoint(), close(), up, error, counters, notes.
    Why one class: the child process, its pipe buffer and the cursor are one state; every
    method moves them together, and the cursor must match exactly what poll() handed out.
    """

    def __init__(self, name: str, *, directory: str = "", identifiers: Sequence[str] = ("postfix*",),
                 start_at: Literal["end", "beginning"] = "end", saved: Mapping[str, Any] | None = None,
                 since: str = "", follow: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        """`since`: a journalctl --since time for the first start; `follow=False` stops at the end."""
        self.directory = directory
        self.identifiers = tuple(identifiers)
        self._start_at = start_at
        self._since = since
        self._follow = follow
        self._cursor = ""
        self._entries = 0  # entries read, matched or not
        self._bytes = 0
        self._matched = 0
        self._gaps = 0
        self._gone = ""  # the vanished cursor already counted
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buf = b""
        self._more = False
        self._eof = False
        super().__init__(name, clock)
        self.finished = False  # follow=False: journalctl reached the end
        if saved is not None:
            problem = _saved_problem(saved)
            if problem:
                self._note("state_mismatch", reason=f"saved journal position unusable: {problem}")
            else:
                self._cursor = saved["cursor"]
                self._entries = int(saved["entries"])
                self._matched = int(saved["matched"])
                self._gaps = int(saved["cursor_gaps"])
                self._bytes = int(saved["bytes_read"])

    # ----------------------------------------------------------------- public API

    @property
    def bytes_read(self) -> int:
        """Bytes of journalctl's JSON read so far (the journal has no byte offsets of its own)."""
        return self._bytes

    @property
    def entries_read(self) -> int:
        """Journal entries read so far, matched or not."""
        return self._entries

    @property
    def rotations(self) -> int:
        return 0

    @property
    def oversized_lines(self) -> int:
        return 0

    @property
    def cursor_gaps(self) -> int:
        """Times the saved cursor was gone and entries after it may have been vacuumed unread."""
        return self._gaps

    @property
    def lag_bytes(self) -> int:
        """Bytes already read from journalctl but not yet handed out (1 when its pipe had more)."""
        if not self._up:
            return 0
        # An unfinished JSON line is journalctl still writing: not a backlog to hurry for.
        complete = self._buf.rfind(b"\n") + 1
        return complete + (1 if self._more else 0)

    @property
    def current_path(self) -> str:
        return self.directory or "journal"

    def watch_dirs(self) -> set[str]:
        """Folders whose changes should wake the daemon (the journal files' folders)."""
        roots = (self.directory,) if self.directory else _LOCAL_DIRS
        out: set[str] = set()
        for root in roots:
            p = Path(root)
            if p.is_dir():
                out.add(str(p.resolve()))
                out.update(str(c.resolve()) for c in p.iterdir() if c.is_dir())
        return out

    def _poll(self, max_bytes: int) -> list[bytes]:
        if self.directory and not Path(self.directory).is_dir():
            # journalctl would wait on a missing directory without a word: say it is down.
            self._stop_child()
            self._fail(f"journal directory {self.directory} does not exist")
            return []
        if self._proc is None and not self.finished:
            if self._clock() < self._next_try:
                return []
            self._spawn()
        out: list[bytes] = []
        if self._proc is None:
            return out
        self._read_pipe(max_bytes)
        self._take(out, max_bytes)
        if self._eof and b"\n" not in self._buf:
            self._proc.wait()
            self._exited()
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able position matching exactly the entries poll() has handed out."""
        return {"v": CHECKPOINT_VERSION, "source": "journal", "cursor": self._cursor,
                "entries": self._entries, "bytes_read": self._bytes, "matched": self._matched,
                "cursor_gaps": self._gaps}

    def close(self) -> None:
        """Stop journalctl; a later poll() resumes after the last handed-out entry."""
        self._stop_child()

    # ----------------------------------------------------------------- the child process

    def _base_args(self) -> list[str]:
        args = [JOURNALCTL, "--output=json", f"--output-fields={_FIELDS}", "--no-pager", "--quiet"]
        if self.directory:
            args.append(f"--directory={self.directory}")
        return args

    def _run_once(self, extra: list[str]) -> list[dict[str, Any]]:
        """Entries of one short journalctl run (a probe); raises OSError/CalledProcessError."""
        res = subprocess.run(self._base_args() + extra, capture_output=True, timeout=60, check=True)
        return [e for e in (_json(line) for line in res.stdout.splitlines()) if e is not None]

    def _start_args(self) -> list[str]:
        """Where to start: after the saved cursor, at the journal's end, or at its start."""
        if self._cursor:
            probe = self._run_once([f"--cursor={self._cursor}", "--lines=1"])
            if probe and probe[0].get("__CURSOR") == self._cursor:
                return [f"--after-cursor={self._cursor}"]
            # The entry itself is gone (vacuumed, files deleted). --after-cursor would skip one
            # more entry after the nearest position; --cursor starts at that entry.
            first = probe[0].get("__CURSOR", "") if probe else ""
            old, new = _cursor_seq(self._cursor), _cursor_seq(str(first))
            continuous = old is not None and new is not None and old[0] == new[0] and new[1] == old[1] + 1
            if self._gone == self._cursor:
                return [f"--cursor={self._cursor}"]  # the same gap, found again by a child restart
            self._gone = self._cursor
            if not continuous:
                self._gaps += 1
            self._note("journal_cursor_gone", directory=self.current_path, cursor=self._cursor,
                       resumed_at=first, entries_lost="none" if continuous else "unknown, counted as a gap")
            return [f"--cursor={self._cursor}"]
        if self._since:
            return [f"--since={self._since}"]
        if self._start_at == "end":
            tail = self._run_once(["--lines=1"])
            if tail and isinstance(tail[-1].get("__CURSOR"), str):
                self._cursor = tail[-1]["__CURSOR"]
                return [f"--after-cursor={self._cursor}"]
        return []

    def _spawn(self) -> None:
        blocked = _unreadable_system_journal() if not self.directory else ""
        if blocked:
            # journalctl would show only this user's own entries, without a word (with --quiet).
            self._fail(f"cannot read {blocked}: the user needs group systemd-journal (or adm)")
            return
        try:
            args = self._base_args() + self._start_args()
            if self._follow:
                args.append("--follow")
            # --follow alone shows only the last 10 entries; every entry from the start is wanted.
            args.append("--no-tail")
            # stderr to a file, not a pipe: warnings nobody reads would fill a pipe and stall
            # journalctl; the file's tail explains an exit.
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _stop_child
            self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except (OSError, subprocess.SubprocessError) as exc:
            self._fail(_describe(exc))
            return
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._recover()

    def _read_pipe(self, max_bytes: int) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        self._more = False
        while len(self._buf) < max_bytes:
            try:
                chunk = os.read(fd, _READ)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(_describe(exc))
                return
            if not chunk:
                self._eof = True
                return
            self._buf += chunk
        self._more = True

    def _take(self, out: list[bytes], max_bytes: int) -> None:
        """Hand out the complete JSON lines of the buffer, up to about `max_bytes` of rendered lines."""
        pos = 0
        size = 0
        buf = self._buf
        while size < max_bytes:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            entry = _json(buf[pos:nl])
            self._bytes += nl + 1 - pos
            pos = nl + 1
            if entry is None:
                self._note("journal_entry_unreadable", directory=self.current_path)
                continue
            cursor = entry.get("__CURSOR")
            if isinstance(cursor, str):
                self._cursor = cursor
            self._entries += 1
            ident = _bytes(entry.get("SYSLOG_IDENTIFIER"))
            if ident is None or not self._wanted(ident.decode("utf-8", "replace")):
                continue
            line = render(entry)
            if line is not None:
                self._matched += 1
                out.append(line)
                size += len(line) + 1
        self._buf = buf[pos:]

    def _wanted(self, ident: str) -> bool:
        return any(fnmatch.fnmatchcase(ident, pat) for pat in self.identifiers)

    def _exited(self) -> None:
        assert self._proc is not None
        code = self._proc.returncode
        err = b""
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.seek(0)
                err = self._stderr.read()[-4096:]
        self._stop_child()
        if code == 0 and not self._follow:
            self.finished = True
            return
        text = err.decode("utf-8", "replace").strip().splitlines()
        self._fail(f"journalctl exited {code}: {text[-1] if text else 'no message'}")

    def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        self._buf = b""  # unhanded entries are read again after the cursor
        self._more = False
        self._eof = False
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _unreadable_system_journal() -> str:
    """A system journal file this process cannot read, when it can read none; "" otherwise."""
    files = [f for d in _LOCAL_DIRS if Path(d).is_dir() for f in Path(d).rglob("system*.journal")]
    if files and not any(os.access(f, os.R_OK) for f in files):
        return str(files[0])
    return ""


_DECODE: Final = msgspec.json.Decoder().decode  # about 2x json.loads on journal entries


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        obj = _DECODE(line)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        err = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        return f"journalctl exited {exc.returncode}: {err[-1] if err else 'no message'}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return str(exc)


def _saved_problem(saved: Mapping[str, Any]) -> str:
    if not isinstance(saved, Mapping) or saved.get("source") != "journal":
        return "not a journal position (the log was a file before?)"
    if not isinstance(saved.get("cursor"), str):
        return "cursor is not a string"
    for key in ("entries", "bytes_read", "matched", "cursor_gaps"):
        if not isinstance(saved.get(key), int) or saved[key] < 0:
            return f"{key} is not a count"
    return ""
