"""Every file of the log starts with the same banner: content alone cannot tell the files apart.

Found by the kill -9 campaign (`python -m tests.crash_campaign copytruncate 200 SEED banner`): a
file holding only the banner, or a position inside it, matched every later file. Each test builds
one such moment with real logrotate and checks that every line comes back exactly once; each
failed before inodes joined content in the identity of files read (sources/identity.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from logscan.sources.follower import Follower
from logscan.sources.identity import FP_MAX
from logscan.sources.logfiles import LogFiles
from tests.helpers_files import LogWriter, drain, gzip_file, run_logrotate
from tests.test_rotation_races import _before_read

DELAYCOMPRESS = "create\n  compress\n  delaycompress"
BANNER = [f"banner line {i:02d} {'x' * 60}".encode() for i in range(10)]  # 890 bytes: over FP_MAX


class BannerWriter(LogWriter):
    """An MTA that writes the banner at the start of every file."""

    def banner(self) -> list[bytes]:
        self.raw(b"".join(line + b"\n" for line in BANNER))
        self.written += BANNER
        return list(BANNER)


def _rotate(tmp: Path, log: Path, how: str) -> None:
    run_logrotate(tmp, f"{log} {{\n  rotate 10\n  {how}\n}}\n")


def _follow(f: Follower) -> list[bytes]:
    return drain(f) + drain(f)


def _next_file(tmp: Path, w: BannerWriter, conf: str, lines: int) -> list[bytes]:
    """logrotate with `conf` (renaming), then the MTA's new file: the banner and `lines` lines."""
    _rotate(tmp, w.path, conf)
    w.reopen()
    return w.banner() + w.line(lines)


def test_restart_after_a_copytruncate_of_a_file_read_up_to_its_banner(tmp_path: Path) -> None:
    # Saved inside the banner; while down the MTA wrote on, logrotate copied and truncated, and
    # the MTA wrote the banner again. The live file (same inode) holds the saved position too: it
    # was taken for ours, so the copy's lines and the new banner were lost.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    first = w.banner()
    f = Follower("m", str(log), start_at="beginning")
    assert _follow(f) == first
    saved = f.checkpoint()
    f.close()
    down = w.line(4)
    _rotate(tmp_path, log, "copytruncate")
    again = w.banner() + w.line(2)
    g = Follower("m", str(log), start_at="beginning", saved=saved)
    assert _follow(g) == [*down, *again]


def test_a_copy_holding_the_banner_and_two_lines_is_read(tmp_path: Path) -> None:
    # A copy of the banner alone was read to its end. Later logrotate copied twice before we
    # looked; the second copy holds the banner and two lines. It held every byte of that
    # banner-only file, so it was taken for it: twelve lines lost.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner()
    f = Follower("m", str(log), start_at="beginning", retire_after=0.0)
    got = _follow(f)
    _rotate(tmp_path, log, "copytruncate")  # mail.log.1: the banner alone, already read
    got += _follow(f)
    expected += w.banner() + w.line(3)
    got += _follow(f)
    _rotate(tmp_path, log, "copytruncate")
    expected += w.banner() + w.line(2)
    _rotate(tmp_path, log, "copytruncate")  # mail.log.1: a banner and two lines, never seen
    expected += w.banner() + w.line(1)
    got += _follow(f)
    assert sorted(got) == sorted(expected)


def test_copytruncate_and_rewrite_past_our_offset_between_two_looks(tmp_path: Path) -> None:
    # We had read the banner; before our next look the MTA wrote, logrotate copied and truncated,
    # and the MTA wrote the banner and more: the live file is longer than our offset and holds
    # the same bytes before it, so it looked like growth. Only the copy tells: it holds what we
    # read and lines the live file does not.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner()
    f = Follower("m", str(log), start_at="beginning")
    got = _follow(f)
    expected += w.line(3)
    _rotate(tmp_path, log, "copytruncate")
    expected += w.banner() + w.line(2)
    got += _follow(f)
    assert got == expected
    assert f.rotations == 1


def test_restart_after_a_rename_reads_a_new_file_holding_only_the_banner(tmp_path: Path) -> None:
    # A file of the banner alone was read to its end; while we were down logrotate renamed the
    # live file and the MTA wrote the banner into the new one. It held every byte of the file
    # already read, so it was taken for it (`live file matches a file already read`): its banner
    # was skipped.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    f = Follower("m", str(log), start_at="beginning", retire_after=0.0)
    expected = w.banner() + w.line(2)
    got = _follow(f)
    _rotate(tmp_path, log, "create")
    w.reopen()
    expected += w.banner()
    got += _follow(f)
    _rotate(tmp_path, log, "create")  # the banner-only file is read to its end
    w.reopen()
    expected += w.banner() + w.line(1)
    got += _follow(f)
    assert got == expected
    saved = f.checkpoint()
    assert any(d["size"] == len(b"".join(line + b"\n" for line in BANNER)) for d in saved["done"])
    f.close()
    _rotate(tmp_path, log, "create")
    w.reopen()
    down = w.banner()
    g = Follower("m", str(log), start_at="beginning", saved=saved, retire_after=0.0)
    assert _follow(g) == down


def test_copytruncate_between_opening_the_live_file_and_its_first_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A restart opened the live file to read it from its start; logrotate copied and truncated it
    # and the MTA wrote the banner and a line before that first read. From offset 0 nothing read
    # can tell (every file starts with the banner): the new file was read and the copy, the
    # file we had opened, was lost. What the file held when opened tells.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning")
    got = _follow(f)
    saved = f.checkpoint()
    f.close()
    _rotate(tmp_path, log, "copytruncate")  # while down: the restart reads the live file from 0
    expected += w.banner() + w.line(2)

    def rotate() -> None:
        _rotate(tmp_path, log, "copytruncate")
        expected.extend(w.banner() + w.line(1))

    fired = _before_read(monkeypatch, log, lambda off, n: off == 0 and n > FP_MAX, rotate)
    g = Follower("m", str(log), start_at="beginning", saved=saved)
    got += _follow(g)
    assert fired == [0]
    assert sorted(got) == sorted(expected)


def test_restart_finds_a_file_saved_unread_after_another_took_its_name(tmp_path: Path) -> None:
    # Two renames came before we read the first new file (offset 0: its banner is all its position
    # says). While down it was compressed and its plain file removed, and a newer file, banner
    # first, had the name it was saved under: it held the saved position, so it was taken for it,
    # and the file itself (now an archive) was never read. What it held past the offset tells.
    # Then, found in its archive at offset 0, it was known by its banner alone, which every
    # unseen archive holds: an archive is known only by all of its content.
    log = tmp_path / "mail.log"
    conf = DELAYCOMPRESS
    w = BannerWriter(log)
    expected = w.banner() + w.line(5)
    f = Follower("m", str(log), start_at="beginning", retire_after=3600.0)
    got = f.poll()
    rest = w.line(40)
    expected += rest
    unread = len(b"".join(line + b"\n" for line in rest))
    for n in (3, 2):
        expected += _next_file(tmp_path, w, conf, n)
    got += f.poll(max_bytes=unread)  # the oldest file's rest: the two new ones are opened, not read
    saved = f.checkpoint()
    assert [r["offset"] for r in saved["files"]][-2:] == [0, 0]
    f.close()
    for n in (4, 6, 1):  # the file of 4 lines ends compressed too, never seen
        expected += _next_file(tmp_path, w, conf, n)
    g = Follower("m", str(log), start_at="beginning", saved=saved, retire_after=3600.0)
    got += _follow(g)
    assert sorted(got) == sorted(expected)


def test_second_copytruncate_while_the_first_is_handled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The campaign's lost copy (copytruncate 30 13 banner racing): we saw the first truncation and
    # listed the folder to find its copy; logrotate then copied and truncated again, moving that
    # copy to mail.log.2 and making a new mail.log.1 (the banner and a line). The old listing had no
    # mail.log.2: no copy was found, what we had read was remembered as done, and that hid the
    # copy's last three lines from every later look. A listing that changed as we looked is
    # looked at again.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(5)
    f = Follower("m", str(log), start_at="beginning", retire_after=0.0)
    got = _follow(f)
    expected += w.line(3)
    _rotate(tmp_path, log, "copytruncate")
    expected += w.banner() + w.line(1)
    fired: list[int] = []
    real = LogFiles.listing

    def listing(self: LogFiles) -> list[tuple[str, int]]:
        names = real(self)
        if not fired:
            fired.append(len(names))
            _rotate(tmp_path, log, "copytruncate")
            expected.extend(w.banner() + w.line(2))
        return names

    monkeypatch.setattr(LogFiles, "listing", listing)
    got += _follow(f)
    assert fired == [2]  # mail.log and the first copy, listed before the second rotation
    assert sorted(got) == sorted(expected)



@pytest.mark.parametrize("conf", ["create", DELAYCOMPRESS])
def test_renames_under_the_read_of_a_file_opened_at_its_banner_are_no_copytruncate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conf: str) -> None:
    # Two rename rotations between our look at the file (opened, the banner alone) and its read:
    # the newer file, renamed to mail.log.1, starts with the banner and holds lines ours does
    # not, so it was taken for a copytruncate copy of ours and read again from its start. A file
    # no longer at the live name was renamed, not copied and truncated.
    w, got, expected, g = _opened_unread(tmp_path)

    def rotate() -> None:
        for n in (2, 1):
            expected.extend(_next_file(tmp_path, w, conf, n))

    fired = _before_read(monkeypatch, w.path, lambda off, n: off == 0 and n > FP_MAX, rotate)
    got += _follow(g)
    assert fired == [0]
    assert sorted(got) == sorted(expected)

def test_restart_reads_an_archive_holding_a_banner_only_file_read_in_the_same_scan(tmp_path: Path) -> None:
    # While down: a file of the banner alone, then one of the banner and two lines, both
    # compressed by later rotations. The restart took the older archive (the banner alone) and
    # dropped the newer one as "a copy of one just taken", as it holds every byte of it: its two
    # lines were lost. A copy holds all of a file and nothing more.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning")
    got = _follow(f)
    g = Follower("m", str(log), start_at="beginning", saved=f.checkpoint())
    f.close()
    g.open()  # saved again by a life that read nothing: no line ends of what we read are kept
    saved = g.checkpoint()
    g.close()
    for n in (0, 2, 1, 1):
        _rotate(tmp_path, log, DELAYCOMPRESS)
        w.reopen()
        expected += w.banner() + w.line(n)
    h = Follower("m", str(log), start_at="beginning", saved=saved)
    got += _follow(h)
    # The archive of the banner alone is the one file no content tells apart from a copy of the
    # banner we read (decision 0013, limits): its lines are not asserted.
    assert sorted(got) == sorted(expected)


def _opened_unread(tmp_path: Path) -> tuple[BannerWriter, list[bytes], list[bytes], Follower]:
    """A restart after a copytruncate while down opened the new live file, the banner alone, and
    read nothing of it yet; then the MTA wrote two lines. The writer, lines read, lines written
    and the follower."""
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning")
    got = _follow(f)
    saved = f.checkpoint()
    f.close()
    _rotate(tmp_path, log, "copytruncate")
    expected += w.banner()
    g = Follower("m", str(log), start_at="beginning", saved=saved)
    g.open()
    expected += w.line(2)
    return w, got, expected, g


def test_copytruncate_of_a_file_opened_at_its_banner_and_not_read(tmp_path: Path) -> None:
    # From offset 0 nothing read tells, and what the file held when opened (the banner) the new
    # file holds too: the two lines went with the copy, unseen. The copy tells: it holds what the
    # file held when opened and lines the live file does not.
    w, got, expected, g = _opened_unread(tmp_path)
    _rotate(tmp_path, w.path, "copytruncate")
    expected += w.banner() + w.line(1)
    got += _follow(g)
    assert sorted(got) == sorted(expected)


def test_copytruncate_between_the_look_and_the_read_of_a_file_opened_at_its_banner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same copytruncate, between our look at the file and the read: the read returned the new
    # file's banner and line as if they were ours. A copy made meanwhile is looked for after the read.
    w, got, expected, g = _opened_unread(tmp_path)

    def rotate() -> None:
        _rotate(tmp_path, w.path, "copytruncate")
        expected.extend(w.banner() + w.line(1))

    fired = _before_read(monkeypatch, w.path, lambda off, n: off == 0 and n > FP_MAX, rotate)
    got += _follow(g)
    assert fired == [0]
    assert sorted(got) == sorted(expected)


def _saved_beside_a_banner_only_file(tmp_path: Path) -> tuple[BannerWriter, list[bytes], list[bytes],
                                                                  dict[str, Any]]:
    """Saved and stopped: a rotated file of the banner alone (read to its end, kept open: its
    position the banner's end) and the live file, under delaycompress. The writer, lines read,
    lines written and the checkpoint."""
    w = BannerWriter(tmp_path / "mail.log")
    expected = w.banner() + w.line(2)
    f = Follower("m", str(w.path), start_at="beginning", retire_after=3600.0)
    got = _follow(f)
    for n in (0, 3):
        expected += _next_file(tmp_path, w, DELAYCOMPRESS, n)
        got += _follow(f)
    saved = f.checkpoint()
    f.close()
    assert [r["offset"] for r in saved["files"]][-2] == len(b"".join(line + b"\n" for line in BANNER))
    return w, got, expected, saved


def test_restart_never_takes_the_live_file_renamed_for_a_compressed_banner_only_file(tmp_path: Path) -> None:
    # Saved: a rotated file of the banner alone at mail.log.1 (position: the banner's end), and the
    # live file. While down a rotation compressed the first (a new inode) and renamed the live file
    # to mail.log.1: it held the banner-long position under the saved name, so it was taken for
    # it and read again from the banner's end. Only the live file's content moves to a plain file
    # of another inode (copytruncate); a rotated file keeps its inode or is compressed.
    w, got, expected, saved = _saved_beside_a_banner_only_file(tmp_path)
    expected += w.line(2)
    expected += _next_file(tmp_path, w, DELAYCOMPRESS, 1)
    g = Follower("m", str(w.path), start_at="beginning", saved=saved, retire_after=3600.0)
    got += _follow(g)
    assert sorted(got) == sorted(expected)


def _two_rotations_before(monkeypatch: pytest.MonkeyPatch, method: str, w: BannerWriter,
                          expected: list[bytes]) -> list[int]:
    """Just before the first call of LogFiles.`method`, logrotate (delaycompress) runs twice: a
    new file of the banner and a line, then one of the banner alone."""
    fired: list[int] = []
    real = getattr(LogFiles, method)

    def wrapped(self: LogFiles, *args: Any, **kw: Any) -> Any:
        if not fired:
            fired.append(1)
            for n in (1, 0):
                expected.extend(_next_file(w.path.parent, w, DELAYCOMPRESS, n))
        return real(self, *args, **kw)

    monkeypatch.setattr(LogFiles, method, wrapped)
    return fired


def test_restart_never_reads_the_live_file_again_in_its_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The restart opened the live file first; before its scan for unknown rotated files, logrotate
    # renamed it and, a rotation later, compressed it (delaycompress). Its archive holds all of
    # it, and is what the scan finds: its lines were read twice, once in each.
    log = tmp_path / "mail.log"
    conf = DELAYCOMPRESS
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning")
    got = _follow(f)
    saved = f.checkpoint()
    f.close()
    expected += _next_file(tmp_path, w, conf, 2)
    fired = _two_rotations_before(monkeypatch, "intermediates", w, expected)
    g = Follower("m", str(log), start_at="beginning", saved=saved)
    got += _follow(g)
    assert fired
    assert sorted(got) == sorted(expected)


def test_restart_finds_a_banner_only_file_in_its_own_archive(tmp_path: Path) -> None:
    # Saved: a rotated file of the banner alone, read to its end, and the live file. While down
    # both were compressed. The newest archive, the live file's, also holds the banner: it was
    # taken for the banner-only file, read on from the banner's end, and read again as the live
    # file's: its lines counted twice. A file read to its end is found in an archive that holds
    # no more.
    w, got, expected, saved = _saved_beside_a_banner_only_file(tmp_path)
    # Held open, its inode is not given to a newer file (inode reuse is another test's case).
    with (tmp_path / "mail.log.1").open("rb"):
        expected += w.line(2)
        for n in (1, 0):
            expected += _next_file(tmp_path, w, DELAYCOMPRESS, n)
        g = Follower("m", str(w.path), start_at="beginning", saved=saved, retire_after=3600.0)
        got += _follow(g)
    assert sorted(got) == sorted(expected)


def test_restart_on_a_folder_logrotate_changes_meanwhile_scans_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Saved: an archive found and not read yet (offset 0: its banner is all its position says).
    # Logrotate ran twice after the restart listed the folder: the archive moved to a name that
    # listing lacked, and another archive, also starting with the banner, took its saved name.
    # That one was taken for it and the archive itself never read. A restart whose listing
    # changed (names or inodes) under it scans again.
    log = tmp_path / "mail.log"
    conf = DELAYCOMPRESS
    w = BannerWriter(log)
    expected = w.banner() + w.line(1)
    f = Follower("m", str(log), start_at="beginning", retire_after=3600.0)
    got = _follow(f)
    for n in (2, 3, 0):
        expected += _next_file(tmp_path, w, conf, n)
    f.poll(0)  # the rotated files are opened, none read
    saved = f.checkpoint()
    assert any(r["path"].endswith(".gz") and r["offset"] == 0 for r in saved["files"])
    f.close()
    fired = _two_rotations_before(monkeypatch, "locate", w, expected)
    g = Follower("m", str(log), start_at="beginning", saved=saved, retire_after=3600.0)
    got += _follow(g)
    assert fired
    # The banner-only live file's inode went to the next banner-only live file (tmpfs reuses
    # inodes at once): nothing tells them apart (decision 0013, limits), so banners are not asserted.
    assert sorted(_numbered(got)) == sorted(_numbered(expected))


def _numbered(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line not in BANNER]


def test_restart_reads_late_lines_of_a_file_read_to_its_end_and_closed(tmp_path: Path) -> None:
    # A renamed file was read to its end and let go (retire_after = 0); the MTA, not reopened yet,
    # wrote two more lines to it. Known by its inode and what it held, it was skipped whole at the
    # restart. What lies past the end we read is read (the same holds when a new file that starts
    # with the banner reused that inode: its banner is then taken for the old one's).
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning", retire_after=0.0)
    got = _follow(f)
    _rotate(tmp_path, log, "create")
    got += _follow(f)
    saved = f.checkpoint()
    assert saved["done"]
    f.close()
    expected += w.line(2)  # late: the MTA still writes to the renamed file
    w.reopen()
    expected += w.banner() + w.line(1)
    g = Follower("m", str(log), start_at="beginning", saved=saved, retire_after=0.0)
    got += _follow(g)
    assert sorted(got) == sorted(expected)


def test_an_archive_of_a_file_we_hold_is_no_copy_of_the_live_file(tmp_path: Path) -> None:
    # delaycompress, caught between logrotate's steps: the file we still hold open (read to its
    # end) was compressed to mail.log.1.gz, the live file (opened at its banner, not read yet) not
    # renamed yet. The archive starts with the banner and holds lines the live file does not: it
    # was taken for a copytruncate copy of the live file and read again, three lines counted twice.
    log = tmp_path / "mail.log"
    w = BannerWriter(log)
    expected = w.banner() + w.line(3)
    f = Follower("m", str(log), start_at="beginning", retire_after=3600.0)
    got = _follow(f)
    _rotate(tmp_path, log, "create")
    w.reopen()
    expected += w.banner()
    assert f.poll(0) == []  # the new live file opened, nothing read
    expected += w.line(2)
    gzip_file(tmp_path / "mail.log.1")
    got += _follow(f)
    assert sorted(got) == sorted(expected)
