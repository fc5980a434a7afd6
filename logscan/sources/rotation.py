"""Rotation detection: which files make up one log now, and every change between them.

The current file, older ones still being drained (oldest first), and those read to the end
(by fingerprint); a restart finds them again from a checkpoint, and while running a rename,
a new file of a glob, or a copytruncate moves the log on (docs/decisions/0002-tailer.md).
"""

# The follower works on str paths and raw descriptors (fstat); pathlib would only wrap them.
# ruff: noqa: PTH110, PTH116, PTH119

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from logscan.sources.identity import (
    CHECKPOINT_VERSION,
    FP_MAX,
    Known,
    ends_of,
    fingerprint,
    remember,
)
from logscan.sources.logfiles import DIR_MTIME_SLACK_NS, LogFiles, dir_mtime
from logscan.sources.reading import COMPRESS_ERRORS, Stream, ends_within, has, identity, to_end, whole


class Rotations:
    """The open files of one log and the transitions between them; the Follower reads them.

    Why one class: every transition (restart, rename, copytruncate, a copy found) changes the same
    few fields together (current file, old files, files read), and each must see the others' open
    files at once, or logrotate racing us makes one file count twice."""

    def __init__(self, files: LogFiles, note: Callable[..., None], clock: Callable[[], float],
                 start_at: Literal["end", "beginning"], retire_after: float,
                 hold_until_saved: bool = False) -> None:
        self.files = files
        self.cur: Stream | None = None
        self.old: list[Stream] = []  # retiring files, oldest first; drained before cur
        self.done: list[Known] = []
        self.count = 0  # rotations seen, restored from the checkpoint
        self.started = False
        self.waited = False  # the log did not exist at our first look: whatever appears later is new
        self._note = note
        self._clock = clock
        self._start_at = start_at
        self._retire_after = retire_after
        self._hold = hold_until_saved
        self._opening: list[Stream] = []  # files _switch has opened but not yet placed: open too
        self._dir_seen = -1  # the folder's mtime when _copied_away last looked

    def streams(self) -> list[Stream]:
        """Every open file, in reading order."""
        return [*self.old, self.cur] if self.cur is not None else list(self.old)

    def close(self) -> None:
        """Close every open file; start() must run again before the next read."""
        for s in self.streams():
            s.src.close()
        self.old.clear()
        self.cur = None
        self.started = False

    # ----------------------------------------------------------------- start and restart

    def start(self, saved: Mapping[str, Any] | None) -> None:
        """Open the log's files: resume from `saved` (a checkpoint) or start fresh."""
        usable = (saved is not None and saved.get("v") == CHECKPOINT_VERSION
                  and saved.get("pattern") == self.files.pattern and isinstance(saved.get("files"), list))
        if saved is not None and not usable:
            self._note("state_mismatch", reason="saved position is for another pattern or version",
                       saved_pattern=str(saved.get("pattern", "")), pattern=self.files.pattern)
        if usable and saved is not None and not saved["files"]:
            # We were waiting for the log to appear: anything there now was created after our last look.
            usable = False
            self.waited = self.waited or bool(saved.get("waiting"))
        if usable:
            assert saved is not None
            self._settled(saved)
        else:
            self._opened(self._fresh)
        self.started = True

    def _opened(self, how: Callable[[list[Stream]], None]) -> None:
        """Run `how`, closing what it opened if it fails."""
        opened: list[Stream] = []
        try:
            how(opened)
        except BaseException:
            for s in opened:
                s.src.close()
            self.old, self.cur = [], None
            raise

    def _settled(self, saved: Mapping[str, Any]) -> None:
        """Resume from `saved` on a folder that held still meanwhile: a listing taken before
        logrotate moved names points records at files that took them; if the names or inodes
        changed during the scan, it is done again (up to ~0.75 s, then the last one stands)."""
        note, count = self._note, self.count
        notes: list[tuple[str, dict[str, Any]]] = []
        self._note = lambda event, **fields: notes.append((event, fields))
        try:
            for n, listed in enumerate(self.files.looks()):
                if n:  # the last scan's files were found in a listing that changed under it
                    for s in self.streams():
                        s.src.close()
                    self.old, self.cur, self.count = [], None, count
                    notes.clear()
                self._opened(lambda opened: self._resume(saved, opened))
                if self.files.listing() == listed:
                    break
        finally:
            self._note = note
            for event, fields in notes:
                note(event, **fields)

    def _fresh(self, opened: list[Stream]) -> None:
        live = self.files.live_paths()
        path = live[-1] if live else self.files.pattern
        try:
            s = self.files.open(path, 0 if self.waited or self._start_at == "beginning" else None)
        except FileNotFoundError:
            self.waited = True
            raise
        opened.append(s)
        s.current = True
        self.cur = s
        self._remember_history(path)
        how = "appeared" if self.waited else "start-" + self._start_at
        self._note("log_opened", path=path, offset=s.offset, how=how)

    def _resume(self, saved: Mapping[str, Any], opened: list[Stream]) -> None:
        records = [r for r in saved["files"] if isinstance(r, Mapping)]
        live = self.files.live_paths()
        cands = self.files.candidates()
        taken: set[tuple[int, int]] = set()  # (dev, ino) of the files found so far
        located: list[tuple[Mapping[str, Any], Stream]] = []
        saved_cur = next((r for r in reversed(records) if r.get("current")), None)
        # Where a copytruncate copy of lines we had read may end (the kill came before we saw the
        # truncate): such a copy is known as read, never read again as an unknown file.
        copied = ends_of(saved_cur) if saved_cur is not None else []
        for r in records:
            if not r["fp_len"]:
                # A file that was empty has no identity (its inode may belong to another file by
                # now); whatever it received since is found below among the unknown newer files.
                continue
            s = self.files.locate(r, cands, taken, self._is_read)
            if s is None:
                if r is not saved_cur or not self.files.any_holds(cands, copied):
                    self._note("state_mismatch", path=str(r.get("path")), offset=int(r.get("offset", 0)),
                               reason="no file has the saved fingerprint; its unread tail is lost")
                continue
            opened.append(s)
            located.append((r, s))
            if s.path != r.get("path"):
                self._note("log_found_rotated", saved_path=str(r.get("path")), path=s.path, offset=s.offset)
        cur_loc = next((s for r, s in located if r is saved_cur), None)
        live_path = live[-1] if live and os.path.exists(live[-1]) else None
        streams = [s for _, s in located]
        here = None  # the live file
        if live_path is not None:
            # Opened before the scan below, judged on this descriptor and read from it: logrotate
            # renaming it meanwhile can neither hide it nor pass it off as an unknown rotated file.
            # Raises what opening raised: a live file we may not read is unreadable, not missing.
            here = self.files.open(live_path, 0)
            twin = next((s for s in streams if (s.dev, s.ino) == (here.dev, here.ino)), None)
            if twin is not None:
                here.src.close()  # already open under a record (or an empty file found by its inode)
                here = twin
            else:
                opened.append(here)
        # A position names only its own file, not one that starts alike: known = done + found, whole.
        known = self.done + [identity(s) for s in streams] + copied
        read_before = list(known)
        if saved_cur is not None and here is not None:
            # Files written after our last look that we never saw (rotated twice, or copied by
            # copytruncate while we knew the log only as empty) are read whole, oldest first.
            since = int(saved_cur.get("mtime_ns", 0))
            if cur_loc is not None:
                since = min(since, cur_loc.mtime_ns)
            found = self.files.intermediates(known, since, str(live_path), opened)
            streams += self._noted(self._not_copies_of(here, found, known[len(read_before):], opened))
        cur = here
        if here is not None and here is not cur_loc:
            # Files read to the end only: the files found above are other inodes, however alike.
            sizes = [] if any(s is here for s in streams) else [k.size for k in self.done if has(here, k)]
            if sizes:
                # Already counted under another name (moved back?): never read that part twice;
                # what came after it is new.
                self._note("state_mismatch", reason="live file matches a file already read", path=live_path)
                if min(sizes) < 0:
                    to_end(here, self.files.max_line)  # an identity of an older version: its size is unknown
                else:
                    here.seek(max(sizes))
            if saved_cur is not None:
                self.count += 1
                self._note("log_rotated", how=self.files.restart_how(saved_cur, cur_loc, here.src.fstat()),
                           path=live_path, old_path=str(saved_cur.get("path")), while_down=True)
            else:
                self._note("log_opened", path=live_path, offset=here.offset, how="appeared")
        wall, mono = time.time(), self._clock()
        for s in streams:
            s.current = s is cur
            # An old file idle since long before the restart retires as soon as it is drained.
            s.last_growth = min(s.last_growth, mono - max(0.0, wall - s.mtime_ns / 1e9))
        self.old = [s for s in streams if s is not cur]
        if cur is not None:
            cur.current = True
            self.cur = cur

    def _intermediates(self, *args: Any) -> list[Stream]:
        """LogFiles.intermediates, each file found noted."""
        return self._noted(self.files.intermediates(*args))

    def _noted(self, found: list[Stream]) -> list[Stream]:
        for s in found:
            self._note("log_found_rotated", saved_path="", path=s.path, offset=s.offset)
        return found

    @staticmethod
    def _not_copies_of(live: Stream, found: list[Stream], ids: list[Known],
                       opened: list[Stream]) -> list[Stream]:
        """`found` (with their whole identities `ids`) less the copies of the live file (opened
        first): one logrotate is making right now (copytruncate during the scan), which takes over
        where we are once the truncation is seen, as while running; or its archive, made after
        logrotate renamed it during the scan."""
        keep = []
        size = live.src.fstat().st_size
        for s, k in zip(found, ids, strict=True):
            # A copy being made may hold less than the live file; an archive holds all of it, else
            # it is of an older file that starts alike (a banner alone).
            if (s.size is not None or k.size == size) and has(live, k.content()):
                s.src.close()
                opened.remove(s)
            else:
                keep.append(s)
        return keep

    # ----------------------------------------------------------------- running: rotation checks

    def refresh(self) -> None:
        """Look for a rotation of the current file (rename, new glob file, copytruncate)."""
        live = self.files.live_paths()
        cur = self.cur
        if cur is None:
            if not live:
                raise FileNotFoundError(errno.ENOENT, "no such file", self.files.pattern)
            s = self.files.open(live[-1], 0)  # appeared after we started: all of it is new
            s.current = True
            self.cur = s
            self._note("log_opened", path=s.path, offset=0, how="appeared")
            return
        if self.files.glob:
            newer = [p for p in live if os.path.basename(p) > os.path.basename(cur.path)]
            if newer:
                self._switch(newer, "new-file")
                return
        try:
            st = os.stat(cur.path)
        except FileNotFoundError:
            # Renamed away, new one not created yet: keep draining the file we hold.
            size = cur.src.fstat().st_size
            if size != cur.size:
                cur.size, cur.last_growth = size, self._clock()
            return
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", cur.path)
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            how = "rename" if cur.src.fstat().st_nlink > 0 else "new-file"
            self._switch([cur.path], how)
            return
        self.check_same(cur, st)

    def _switch(self, paths: list[str], how: str) -> None:
        """The log continues in `paths` (oldest first): retire the current file, read them from 0."""
        old = self.cur
        assert old is not None
        new: list[Stream] = []
        open_ids = {(s.dev, s.ino) for s in self.old}
        try:
            for p in paths:
                s = self.files.open(p, 0)
                if (s.dev, s.ino) in open_ids:
                    s.src.close()
                    continue
                new.append(s)
        except OSError:
            for s in new:
                s.src.close()
            raise
        old.current = False
        old.last_growth = self._clock()
        self.old.append(old)
        self.cur = None
        # The new files count as open in every look for unseen files below: logrotate may have
        # renamed them already (racing us), and they must not be taken for rotated files.
        self._opening = new
        try:
            # Bring the old file's identity up to date first (it may have been truncated before
            # the rename); _unseen must recognise its compressed copy by that identity.
            self.check_same(old, old.src.fstat())
            if not new:
                return
            *between, cur = new
            if not self.files.glob:
                # Rotated twice since the last poll? The file in between is read whole.
                self.old += self._unseen(old.mtime_ns, cur.path)
        finally:
            self._opening = []
        self.old.extend(between)
        cur.current = True
        self.cur = cur
        self.count += 1
        self._note("log_rotated", how=how, path=cur.path, old_path=old.path, old_unread_bytes=max(
            0, (old.size or 0) - old.offset))

    def check_same(self, cur: Stream, st: os.stat_result, *, force: bool = False) -> None:
        """Same file as before: did it grow, or was it truncated (copytruncate) or rewritten?"""
        changed = force or st.st_size != cur.size or st.st_mtime_ns != cur.mtime_ns
        if not changed:
            return  # idle: one stat, no read
        if st.st_size != cur.size:
            cur.last_growth = self._clock()
        was_empty, since = cur.fp_len == 0 and cur.offset == 0, cur.mtime_ns
        cur.size, cur.mtime_ns = st.st_size, st.st_mtime_ns
        head = cur.src.read_at(0, FP_MAX)
        same = len(head) >= cur.fp_len and fingerprint(head[: cur.fp_len]) == cur.fp
        if same and st.st_size >= cur.offset and cur.tail:  # files may start alike (identity.py)
            same = cur.src.read_at(cur.offset - len(cur.tail), len(cur.tail)) == cur.tail
        if same and cur.opened_size > cur.offset:  # not read that far yet: what it held when opened
            n = len(cur.opened_tail)
            same = cur.src.read_at(cur.opened_size - n, n) == cur.opened_tail
        if same and st.st_size >= cur.offset and cur is self.cur and (cur.offset or cur.opened_size > 0):
            same = not self._copied_away(cur, since, cur.held)
        if same and st.st_size >= cur.offset:
            if len(head) > cur.fp_len:
                cur.fp, cur.fp_len = fingerprint(head), len(head)
            if was_empty:
                # Content arrived in a file we only knew empty: if a copytruncate happened in
                # between, the first lines are in a copy that no fingerprint of ours points to.
                self.old += self._unseen(since, cur.path)
            return
        self._copytruncated(cur, since)

    def copied_under_read(self, cur: Stream, since_ns: int, ours: Callable[[], Known]) -> bool:
        """After a read of the current file, which held `ours()` before it: True when logrotate
        copied and truncated it meanwhile and the MTA wrote the same first bytes again (the read
        returned the new file's lines). Put the read back, then call copytruncated()."""
        return cur is self.cur and self._copied_away(cur, since_ns, ours)

    def copytruncated(self, cur: Stream, since_ns: int) -> None:
        """`cur` was copied and truncated since `since_ns`: go on in its copy, then in it."""
        self._copytruncated(cur, since_ns)

    def _copied_away(self, cur: Stream, since_ns: int, ours: Callable[[], Known]) -> bool:
        """True when logrotate copied and truncated `cur` and the MTA wrote it past our offset
        again, all since our last look, with the same first bytes (a banner): a rotated file
        modified since then holds `ours()` (what we knew `cur` held), and more that `cur` does not
        hold. Looked for only when the folder changed (a copy is a new file), so growth alone
        costs one stat and no hash."""
        if self.files.glob:
            return False
        now = dir_mtime(self.files.dir)
        if now == self._dir_seen:
            return False
        # A folder changed a moment ago may change again within the same file-time tick.
        if time.time_ns() - now >= DIR_MTIME_SLACK_NS:
            self._dir_seen = now
        try:
            st = os.stat(cur.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            return False  # renamed away: newer files starting alike are not copies of it
        held = ours()
        open_ids = {(s.dev, s.ino) for s in self.streams()}
        for p in self.files.candidates():
            try:
                st = os.stat(p)
            except OSError:
                continue
            if p == cur.path or st.st_mtime_ns < since_ns or (st.st_dev, st.st_ino) in open_ids:
                continue
            try:
                c = self.files.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            try:
                if not has(c, held) or self._is_read(c):
                    continue
                k = whole(c)
                # A copy whose every byte the live file still holds is a copy in progress
                # (truncate pending), or holds nothing we could tell apart from it.
                if not has(cur, k.content()) and not self._archive_of_ours(c, k):
                    return True
            except COMPRESS_ERRORS:
                continue
            finally:
                c.src.close()
        return False

    def _archive_of_ours(self, c: Stream, k: Known) -> bool:
        """`c` (all of it: `k`) is an archive of all of a file we hold open or read to its end:
        logrotate compressed it just now (delaycompress: the live file stays where it was, a new one)."""
        if c.size is not None:
            return False
        files = [whole(s) for s in self.streams() if s.size is not None] + self.done
        return any(f.size == k.size and has(c, f.content()) for f in files)

    def first_bytes(self, since_ns: int) -> None:
        """The current file, known empty since `since_ns`, was just read from its start: a copy made
        by a copytruncate in between holds lines we never saw; read it whole."""
        if self.cur is not None:
            self.old += self._unseen(since_ns, self.cur.path)

    def _copytruncated(self, cur: Stream, since_ns: int) -> None:
        # The head and size we compared may predate the truncation (logrotate runs beside us):
        # the new identity comes from reads made after we saw it.
        st = cur.src.fstat()
        head = cur.src.read_at(0, FP_MAX)
        cur.size, cur.mtime_ns = st.st_size, st.st_mtime_ns
        old = cur.held()  # opened and not read that far: its copy holds what it held then
        unread_from = cur.offset
        copy, held = self._copy_of(cur, old, since_ns) if old.fp_len > 0 else (None, False)
        if copy is not None:
            if copy.offset <= unread_from:
                # What we read of it before the truncation is not read again.
                if copy.offset < unread_from:
                    copy.seek(unread_from)
                copy.skipping = cur.skipping
            copy.last_growth = self._clock()
            if not held:
                self.old.append(copy)
        if copy is None:
            remember(self.done, old)  # else the copy is remembered whole once read
        cur.offset, cur.skipping, cur.tail, cur.recent = 0, False, b"", b""
        cur.fp, cur.fp_len = fingerprint(head), len(head)
        cur.mark_opened()
        # Truncated more than once since the last poll: the copies in between are read whole.
        self.old += self._unseen(since_ns, cur.path)
        self.count += 1
        self._note("log_rotated", how="copytruncate", path=cur.path, old_offset=unread_from,
                   tail_from=copy.path if copy is not None else "")

    def _copy_of(self, cur: Stream, old: Known, since_ns: int) -> tuple[Stream | None, bool]:
        """The file logrotate copied `cur` to (it holds `old`), and whether we hold it open already.

        Matched on the open file and read from it, as logrotate may be renaming meanwhile. A copy
        already open (found by a scan while logrotate copied) is the one to go on with: opening
        it a second time read it twice. When files start alike, older copies hold `old` too: the
        copy is the earliest made since `since_ns` (our last look at `cur`), never a file read.
        No copy in a listing that changed as we looked (logrotate shifting names): look again."""
        for listed in self.files.looks():
            found = self._find_copy(cur, old, since_ns, [p for p, _ in listed])
            if found[0] is not None or self.files.listing() == listed:
                break
        return found

    def _find_copy(self, cur: Stream, old: Known, since_ns: int,
                   cands: list[str]) -> tuple[Stream | None, bool]:
        """One look at the folder for `_copy_of`."""
        held = {(s.dev, s.ino): s for s in self.old if s is not cur}
        best: tuple[tuple[int, int], Stream] | None = None
        for p in cands:
            try:
                s = self.files.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            ident = (s.dev, s.ino)
            try:
                match = ident != (cur.dev, cur.ino) and has(s, old) and not self._is_read(s)
            except COMPRESS_ERRORS:
                match = False
            if not match and ends_within(s, cur):
                # The MTA wrote between logrotate's copy and its truncate, and we read that too:
                # the copy holds only what we read. Known whole, it is never read as unknown.
                remember(self.done, whole(s))
            rank = (0, s.mtime_ns) if s.mtime_ns >= since_ns else (1, -s.mtime_ns)
            if match and (best is None or rank < best[0]):
                if best is not None and held.get((best[1].dev, best[1].ino)) is not best[1]:
                    best[1].src.close()
                twin = held.get(ident)
                if twin is not None:
                    s.src.close()
                    s = twin
                best = (rank, s)
            else:
                s.src.close()
        if best is None:
            return None, False
        s = best[1]
        return s, held.get((s.dev, s.ino)) is s

    def _unseen(self, since_ns: int, live_path: str) -> list[Stream]:
        """Rotated files written since `since_ns` that are neither open nor known: read them whole."""
        open_now = self.streams() + self._opening
        known = self.done + [identity(s) for s in open_now]
        ids = {(s.dev, s.ino) for s in open_now}
        return self._intermediates(known, since_ns, live_path, [], ids)

    def _is_read(self, s: Stream) -> bool:
        """`s` is a file we read to its end (its inode and content): never a copy of another."""
        return any(k.ino == s.ino and k.dev == s.dev and has(s, k) for k in self.done)

    def _remember_history(self, live_path: str) -> None:
        for k in self.files.history(live_path):
            remember(self.done, k)

    def saved(self) -> None:
        """A checkpoint of every open file at its present offset is on disk."""
        for s in self.streams():
            s.saved_offset = s.offset

    def reap(self, now: float) -> None:
        """Close old files that are drained and idle; remember them so they are never read again."""
        keep = []
        for s in self.old:
            idle = now - s.last_growth >= self._retire_after
            drained = s.eof if s.size is None else s.offset >= s.size
            held = self._hold and s.saved_offset != s.offset  # the state on disk still reads it
            if drained and (idle or s.size is None) and not held:
                s.src.close()
                remember(self.done, s.known(inode=True))
                self._note("log_closed", path=s.path, offset=s.offset)
            else:
                keep.append(s)
        self.old = keep
