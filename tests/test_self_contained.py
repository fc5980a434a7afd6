"""A clone alone runs the tests: nothing in them, the benchmarks, the scripts or CI reads outside
the repository, and the in-tree real MailEnable log carries no real address, host or IP."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WALKED = ("tests", "benchmarks", "scripts", "Makefile", ".ci", "docs", "README.md")
# The research folder beside our own checkouts; a clone elsewhere has none.
OUTSIDE = re.compile(r"\.\./shared|shared/research")
# Where the checkouts and the interpreter of the machine that wrote the repository live: a
# benchmark result or a doc naming them is true of that machine only.
MACHINE = re.compile(r"/work/[a-z]|/root/\.pyenv")
REAL_LOG = REPO / "tests" / "data" / "mailenable-9.76-SMTP-Activity.log"
DOC_NETS = [
    ipaddress.ip_network(net) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "127.0.0.0/8")
]


def walked_files() -> list[Path]:
    """Tracked files plus new ones not ignored (generated benchmark data is ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *WALKED],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    if listed.returncode == 0:
        paths = {REPO / p for p in listed.stdout.decode().split("\0") if p}
    else:  # not a git checkout (an unpacked archive): every file, caches left out
        paths = {p for name in WALKED for p in [REPO / name, *(REPO / name).rglob("*")]}
        generated = REPO / "benchmarks" / "data"
        paths = {p for p in paths if "__pycache__" not in p.parts and generated not in p.parents}
    return sorted(p for p in paths if p.is_file() and p != Path(__file__).resolve())


def test_nothing_reads_the_research_folder_beside_the_checkout() -> None:
    files = walked_files()
    assert REPO / "Makefile" in files
    assert REPO / ".ci" / "run" in files
    assert REAL_LOG in files
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}"
        for path in files
        for n, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert found == [], "references to the research folder beside the checkout:\n" + "\n".join(found)


def test_no_file_names_a_path_of_the_machine_it_was_written_on() -> None:
    files = walked_files()
    assert REPO / "docs" / "benchmarks.md" in files
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}"
        for path in files
        for n, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1)
        if MACHINE.search(line)
    ]
    assert found == [], "paths of one machine:\n" + "\n".join(found)
    assert MACHINE.search("- Python 3.11.7 (/work/" + "main/.venv/bin/python)")
    assert not MACHINE.search("- Python 3.11.7 (.venv/bin/python)")


def test_the_pattern_catches_both_spellings() -> None:
    assert OUTSIDE.search('Path("../' + 'shared/research/x.log")')
    assert OUTSIDE.search("/work/" + "shared/research/samples")
    assert not OUTSIDE.search("shared machine: other engineers' tests")


def test_real_mailenable_log_is_anonymized() -> None:
    """Every IP is in a documentation range (or loopback), every host name under example.*,
    every local part made up (scripts/anonymize_mailenable.py)."""
    text = REAL_LOG.read_bytes().decode("utf-8", "surrogateescape")
    ips = set(re.findall(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w.])", text))
    assert len(ips) > 300
    assert [ip for ip in ips if not any(ipaddress.ip_address(ip) in net for net in DOC_NETS)] == []
    rows = [line.split("\t") for line in text.splitlines() if line.count("\t") >= 11]
    assert len(rows) == 5340
    # Host names where the log writes them: commands, replies, accounts (column 2 is a
    # message id like 4147BA0C....MAI, column 12 a subject).
    hosts = {
        h.lower()
        for cols in rows
        for col in (cols[6], cols[7][4:], cols[10])
        for h in re.findall(r"(?<![\w.@-])(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])", col)
    }
    assert len(hosts) > 250
    allowed = re.compile(r"(?:[a-z0-9-]+\.)*example\.(?:com|net|org)|localhost\.localdomain")
    assert sorted(h for h in hosts if not allowed.fullmatch(h)) == []
    locals_ = {m.lower() for cols in rows for m in re.findall(r"([^\s<>@:]+)@", cols[6] + " " + cols[10])}
    assert sorted(lp for lp in locals_ if not re.fullmatch(r"u[0-9]+", lp)) == []
    assert {cols[11] for cols in rows} <= {""} | {f"Subject {n}" for n in range(1, 100)}
