"""Follow daily MailEnable logs on a Windows (SMB) share by polling, exactly once by offset.

Design (docs/decisions/0015-smb-client.md): smbprotocol's `smbclient` lists the share's folder
and reads the files by offset; no mount, no inotify (which sees nothing on a share).
MailEnable writes one file a day (SMTP-Activity-YYMMDD.log), appends to it and never renames
it: files are taken in name order, each read to its end before the next one is started. The
checkpoint names the file being read by name and a fingerprint of its first bytes (as for
local files, identity.py), with its offset and the fingerprints of files read to the end.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import smbclient
from smbprotocol.exceptions import SMBException

from logscan.sources.identity import DONE_HISTORY, FP_MAX, fingerprint
from logscan.sources.polled import PolledSource

CHECKPOINT_VERSION: Final = 1
_READ: Final = 1 << 20
# A share that went away shows as any of these: socket errors, SMB status errors, a dropped session.
_SMB_ERRORS: Final = (OSError, SMBException, ValueError, EOFError)


_DIRECTORY: Final = 0x10  # FILE_ATTRIBUTE_DIRECTORY
_ALIASES: Final = {"user": "username", "pass": "password", "workgroup": "domain"}


class SmbConfigError(Exception):
    """A share path or credentials file that cannot be used."""


@dataclass(frozen=True, slots=True)
class ShareUrl:
    """smb://server[:port]/share/folder.../glob, split."""

    server: str
    port: int
    share: str
    folder: tuple[str, ...]
    pattern: str

    @classmethod
    def parse(cls, url: str) -> ShareUrl:
        if not url.startswith("smb://"):
            raise SmbConfigError(f"{url!r} is not an smb:// path")
        parts = url[len("smb://"):].split("/")
        if len(parts) < 3 or not all(parts):
            raise SmbConfigError(f"{url!r} must be smb://server/share/folder.../file-or-glob")
        host, _, port = parts[0].partition(":")
        if port and not port.isdigit():
            raise SmbConfigError(f"{url!r}: port {port!r} is not a number")
        return cls(host, int(port or 445), parts[1], tuple(parts[2:-1]), parts[-1])

    def unc(self, name: str = "") -> str:
        """The Windows path of the folder, or of `name` in it."""
        return "\\\\" + "\\".join((self.server, self.share, *self.folder, *((name,) if name else ())))


def read_credentials(path: str) -> dict[str, str]:
    """username=, password= and optional domain= from a mount.cifs-style file that only its owner reads."""
    try:
        st = os.stat(path)  # noqa: PTH116 - the mode bits are the point
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SmbConfigError(f"credentials file {path}: {exc.strerror or exc}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SmbConfigError(f"credentials file {path} is mode {stat.S_IMODE(st.st_mode):04o}; "
                             "it holds a password: chmod 0600 it")
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        key = _ALIASES.get(key.strip(), key.strip())
        if sep and key in ("username", "password", "domain"):
            out[key] = value.strip()
    if not out.get("username") or "password" not in out:
        raise SmbConfigError(f"credentials file {path}: needs username= and password= lines")
    return out


@dataclass(slots=True)
class _Cur:
    """The file being read: its name, where the next line starts, and its fingerprint so far."""

    name: str
    offset: int
    fp: str = ""
    fp_len: int = 0


class SmbSource(PolledSource):
    """Follows a glob of daily-named, append-only files in a folder of an SMB share.

    The same public face as Follower: poll(), checkpoint(), close(), up, error, counters, notes.
    Why one class: that face is one object per log, and the share's state (session, listing,
    open offsets) is what every method of it reads.
    """

    def __init__(self, name: str, url: str, *, credentials_file: str,
                 start_at: Literal["end", "beginning"] = "end", saved: Mapping[str, Any] | None = None,
                 max_line: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self.pattern = url
        self._url = ShareUrl.parse(url)
        self._cred_path = credentials_file
        self._start_at = start_at
        self._max_line = max_line
        self._cache: dict[str, Any] = {}  # this source's own SMB connections
        self._connected = False
        self._cur: _Cur | None = None
        # The file before the current one: MailEnable may still finish a row in it just after
        # midnight. Its growth shows in the listing at no cost, so it is read until replaced.
        self._prev: _Cur | None = None
        self._done: list[tuple[str, int]] = []  # (fp, fp_len) of files read to the end
        self._saved: Mapping[str, Any] | None = None
        self._sizes: dict[str, int] = {}  # last listing: name → size
        self._stalled: tuple[str, int, int] | None = None  # (name, offset, size) at an unfinished row
        self._bytes_read = 0
        self._rotations = 0  # day changes: a newer file taken up
        super().__init__(name, clock)
        if saved is not None:
            problem = _saved_problem(saved)
            if problem:
                self._note("state_mismatch", reason=f"saved share position unusable: {problem}")
            else:
                self._saved = saved
                self._bytes_read = int(saved["bytes_read"])
                self._rotations = int(saved["rotations"])
                self._done = [(d["fp"], int(d["fp_len"])) for d in saved["done"]]

    # ----------------------------------------------------------------- public API

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    @property
    def rotations(self) -> int:
        return self._rotations

    @property
    def lag_bytes(self) -> int:
        """Bytes the share's last listing showed beyond what was read (0 while down)."""
        if not self._up or self._cur is None:
            return 0
        size = self._sizes.get(self._cur.name, 0)
        # An unfinished last row is MailEnable still writing: not a backlog to hurry for.
        stalled = self._stalled == (self._cur.name, self._cur.offset, size)
        lag = 0 if stalled else max(0, size - self._cur.offset)
        return lag + sum(n_bytes for n, n_bytes in self._sizes.items() if n > self._cur.name)

    @property
    def current_path(self) -> str:
        return self._url.unc(self._cur.name) if self._cur is not None else self.pattern

    def watch_dirs(self) -> set[str]:
        """None: a share is polled, inotify sees nothing of it."""
        return set()

    def _poll(self, max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        if not self._up and self._clock() < self._next_try:
            return out
        try:
            self._connect()
            self._list()
            if self._cur is None:
                self._start()
            budget = max_bytes
            prev = self._prev
            if prev is not None and self._sizes.get(prev.name, -1) > prev.offset:
                budget -= self._read(prev, budget, out)  # older rows first
            elif prev is not None and prev.name not in self._sizes:
                self._prev = None
            while self._cur is not None and budget > 0:
                got = self._read(self._cur, budget, out)
                budget -= got
                if got:
                    continue  # the read may have stopped short of the end
                if self._cur.offset < self._sizes.get(self._cur.name, 0):
                    break  # an unfinished last line: wait for the rest
                if not self._next_file():
                    break
        except SmbConfigError as exc:
            self._fail(str(exc))
        except _SMB_ERRORS as exc:
            self._fail(_describe(exc))
            self._disconnect()
        else:
            self._recover()
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able position matching exactly the lines poll() has returned."""
        if self._cur is None and self._saved is not None:
            return dict(self._saved)
        cur = self._cur
        return {
            "v": CHECKPOINT_VERSION, "source": "smb", "pattern": self.pattern,
            "bytes_read": self._bytes_read, "rotations": self._rotations,
            "file": _record(cur),
            "previous": _record(self._prev),
            "done": [{"fp": fp, "fp_len": n} for fp, n in self._done],
        }

    def close(self) -> None:
        """Drop the SMB connection; a later poll() reconnects and goes on from the same point."""
        self._disconnect()

    # ----------------------------------------------------------------- the share

    def _kw(self) -> dict[str, Any]:
        return {"port": self._url.port, "connection_cache": self._cache}

    def _connect(self) -> None:
        if self._connected:
            return
        cred = read_credentials(self._cred_path)
        user = cred["username"] if "domain" not in cred else f"{cred['domain']}\\{cred['username']}"
        smbclient.register_session(self._url.server, username=user, password=cred["password"],
                                   connection_timeout=10, **self._kw())
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False
        with contextlib.suppress(*_SMB_ERRORS):
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)
        self._cache = {}

    def _list(self) -> None:
        sizes: dict[str, int] = {}
        for entry in smbclient.scandir(self._url.unc(), **self._kw()):
            # The listing's own fields: entry.stat() and is_file() would open a new connection
            # without this source's port and credentials.
            info = entry.smb_info
            if info.file_attributes & _DIRECTORY or not fnmatch.fnmatch(
                    entry.name.lower(), self._url.pattern.lower()):
                continue
            sizes[entry.name] = int(info.end_of_file)
        self._sizes = dict(sorted(sizes.items()))

    def _head(self, name: str, n: int) -> bytes:
        with smbclient.open_file(self._url.unc(name), mode="rb", share_access="rwd", **self._kw()) as f:
            data = f.read(n)
        assert isinstance(data, bytes)
        return data

    def _is_done(self, name: str) -> bool:
        for fp, n in self._done:
            if n and self._sizes.get(name, 0) >= n and fingerprint(self._head(name, n)) == fp:
                return True
        return False

    def _start(self) -> None:
        """Find where to read: the saved file (by name, checked by fingerprint), or a first start."""
        names = list(self._sizes)
        saved = self._saved.get("file") if self._saved is not None else None
        prev = self._saved.get("previous") if self._saved is not None else None
        if isinstance(prev, Mapping) and prev["name"] in self._sizes and prev["fp_len"] and (
                fingerprint(self._head(prev["name"], prev["fp_len"])) == prev["fp"]):
            self._prev = _Cur(prev["name"], prev["offset"], prev["fp"], prev["fp_len"])
        if isinstance(saved, Mapping) and saved["name"] in self._sizes:
            head = self._head(saved["name"], saved["fp_len"])
            if saved["fp_len"] == 0 or fingerprint(head) == saved["fp"]:
                self._cur = _Cur(saved["name"], saved["offset"], saved["fp"], saved["fp_len"])
                self._saved = None
                return
            self._note("state_mismatch", path=self._url.unc(saved["name"]),
                       reason="the file under the saved name has other content; reading it from the start")
        if self._saved is not None:
            # The saved file is gone or replaced: every newer file not read to its end, from its start.
            after = str(saved["name"]) if isinstance(saved, Mapping) else ""
            todo = [n for n in names if n >= after and not self._is_done(n)]
            self._saved = None
            if todo:
                self._cur = _Cur(todo[0], 0)
            return
        if not names:
            self._start_at = "beginning"  # a file that appears later is new: read all of it
            return
        if self._start_at == "end":
            last = names[-1]
            self._cur = _Cur(last, self._sizes[last])
            self._fill_fp(self._cur)
        else:
            self._cur = _Cur(names[0], 0)

    def _next_file(self) -> bool:
        """At the end of the current file: take the next newer one if there is one."""
        assert self._cur is not None
        newer = [n for n in self._sizes if n > self._cur.name]
        if not newer:
            return False
        self._fill_fp(self._cur)
        if self._cur.fp_len:
            self._done.append((self._cur.fp, self._cur.fp_len))
            del self._done[:-DONE_HISTORY]
        self._note("log_rotated", path=self._url.unc(newer[0]), previous=self._cur.name)
        self._prev = self._cur
        self._cur = _Cur(newer[0], 0)
        self._rotations += 1
        return True

    def _fill_fp(self, cur: _Cur) -> None:
        size = self._sizes.get(cur.name, 0)
        want = min(FP_MAX, max(size, cur.offset))
        if want > cur.fp_len:
            cur.fp_len = want
            cur.fp = fingerprint(self._head(cur.name, want))

    def _read(self, cur: _Cur, budget: int, out: list[bytes]) -> int:
        """Append the complete lines after `cur.offset` to `out`; returns the bytes consumed."""
        size = self._sizes.get(cur.name, 0)
        if size < cur.offset and cur is self._prev:
            self._prev = None  # yesterday's file rewritten: nothing of it is worth re-reading
            return 0
        if size < cur.offset:
            # Shorter than what was read: the file was rewritten under its name. Start it over.
            self._note("log_truncated", path=self._url.unc(cur.name), offset=cur.offset, size=size)
            cur.offset, cur.fp, cur.fp_len = 0, "", 0
        if size == cur.offset:
            return 0
        with smbclient.open_file(self._url.unc(cur.name), mode="rb", share_access="rwd", **self._kw()) as f:
            f.seek(cur.offset)
            data = f.read(min(budget + self._max_line, size - cur.offset, _READ * 8))
        assert isinstance(data, bytes)
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) < self._max_line:
                self._stalled = (cur.name, cur.offset, size)
                return 0  # an unfinished line: wait for the rest
            end = len(data)  # an over-long line: hand it out cut, rather than stall
        for line in data[:end].split(b"\n")[: data[:end].count(b"\n") or 1]:
            out.append(line[:-1] if line.endswith(b"\r") else line)
        cur.offset += end
        self._bytes_read += end
        if cur.fp_len < FP_MAX:
            self._fill_fp(cur)
        return end


def _record(cur: _Cur | None) -> dict[str, Any] | None:
    if cur is None:
        return None
    return {"name": cur.name, "offset": cur.offset, "fp": cur.fp, "fp_len": cur.fp_len}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:300]


def _saved_problem(saved: Mapping[str, Any]) -> str:
    if not isinstance(saved, Mapping) or saved.get("source") != "smb":
        return "not a share position (the log was elsewhere before?)"
    for key in ("bytes_read", "rotations"):
        if not isinstance(saved.get(key), int) or saved[key] < 0:
            return f"{key} is not a count"
    for key in ("file", "previous"):
        f = saved.get(key)
        if f is not None and not (
            isinstance(f, Mapping) and isinstance(f.get("name"), str) and isinstance(f.get("fp"), str)
            and isinstance(f.get("offset"), int) and isinstance(f.get("fp_len"), int)
            and f["offset"] >= 0 and f["fp_len"] >= 0
        ):
            return f"{key} record malformed"
    done = saved.get("done")
    if not isinstance(done, list) or not all(
        isinstance(d, Mapping) and isinstance(d.get("fp"), str) and isinstance(d.get("fp_len"), int)
        for d in done
    ):
        return "done records malformed"
    return ""
