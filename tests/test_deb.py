"""The Debian package as an operator gets it: `make deb`'s script builds it, lintian finds no
error, `apt-get install ./dist/logscan_*.deb` installs it on this machine, the installed
daemon runs as the `logscan` user and is scraped over HTTP, then remove keeps the config and
the state and purge deletes them.

Root only (it installs a package and creates a system user), as CI is. systemd is not PID 1
here, so the maintainer scripts enable the unit but start nothing: the test starts the
installed daemon itself, as the unit would, under the `logscan` user.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import logscan
from logscan.core.aggregate import paths_text
from logscan.parsers import scan_paths_text

REPO = Path(__file__).resolve().parents[1]
REAL_LOG = REPO / "tests" / "data" / "mailenable-9.76-SMTP-Activity.log"
UNIT = Path("/lib/systemd/system/logscan.service")
CONF = Path("/etc/logscan/logscan.toml")
STATE = Path("/var/lib/logscan")
VENV = Path("/usr/lib/logscan")
WANTS = Path("/etc/systemd/system/multi-user.target.wants/logscan.service")
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
for _name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
    ENV.pop(_name, None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: root only (CI is root)"),
    pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="not Debian"),
]


def run(*cmd: str | Path, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV
    )
    if check:
        assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def status() -> str:
    """dpkg's status of logscan: "" when dpkg knows nothing of it."""
    done = run("dpkg-query", "-W", "-f=${Status}", "logscan", check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def mode(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return oct(stat.S_IMODE(st.st_mode)), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def replies(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (name, lb), v in samples.items() if name == "logscan_smtp_replies_total" and want <= lb)


@pytest.fixture(scope="module")
def deb() -> Iterator[Path]:
    """The package, built by the script `make deb` runs (make has run setup already)."""
    if status():
        pytest.fail(f"logscan is already installed here ({status()}): this test installs and purges it")
    started = time.monotonic()
    # With the pip of the Python running the tests (the project's .venv under `make test`).
    run("env", f"PIP={sys.executable} -m pip", REPO / "scripts" / "build-deb.sh", timeout=300)
    built = time.monotonic() - started
    arch = run("dpkg", "--print-architecture").stdout.strip()
    path = REPO / "dist" / f"logscan_{logscan.__version__}_{arch}.deb"
    assert path.is_file()
    print(f"\nbuilt {path.name} in {built:.1f} s: {path.stat().st_size / 1024:.0f} KiB")
    yield path
    if status():  # a failure half-way: leave the machine as it was
        run("apt-get", "purge", "-y", "logscan", check=False)


def test_lintian_reports_no_error(deb: Path) -> None:
    done = run("lintian", "--fail-on", "error", deb, check=False)
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert [t for t in tags if t.startswith("E:")] == []
    assert done.returncode == 0, done.stdout + done.stderr
    print("\nlintian:", *tags, sep="\n  ")


def test_contents(deb: Path) -> None:
    listing = run("dpkg-deb", "--contents", deb).stdout
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for wanted in (
        "/usr/bin/logscan",
        "/usr/lib/logscan/bin/logscan",
        "/usr/lib/logscan/pyvenv.cfg",
        "/lib/systemd/system/logscan.service",
        "/usr/lib/sysusers.d/logscan.conf",
        "/usr/lib/tmpfiles.d/logscan.conf",
        "/etc/logscan/logscan.toml",
        "/usr/share/logscan/prometheus/logscan-alerts.yml",
        "/usr/share/logscan/prometheus/logscan-recording.yml",
        "/usr/share/doc/logscan/copyright",
        "/usr/share/doc/logscan/changelog.gz",
        "/usr/share/doc/logscan/README.md",
    ):
        assert wanted in paths, wanted
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in paths)
    assert any(p.startswith("/usr/lib/logscan/lib/python3.") and "_postfix_scan" in p for p in paths)
    assert any(p.startswith("/usr/lib/logscan/lib/python3.") and "_mailenable_scan" in p for p in paths)
    # Owned by root in the archive, whoever built it.
    assert {line.split()[1] for line in listing.splitlines()} == {"root/root"}
    assert run("dpkg-deb", "--field", deb, "Architecture").stdout.strip() != "all"
    depends = run("dpkg-deb", "--field", deb, "Depends").stdout
    minor = run("/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    assert f"python{minor}" in depends  # the interpreter the venv links to
    info = run("dpkg-deb", "--info", deb, "conffiles").stdout.split()
    assert info == ["/etc/logscan/logscan.toml"]


def test_install_run_scrape_upgrade_remove_purge(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # --- install, then the daemon as the logscan user, scraped over real HTTP ------------
    started = time.monotonic()
    run("apt-get", "install", "-y", f"./{deb.relative_to(REPO)}")
    installed = time.monotonic() - started
    assert status() == "install ok installed"

    # A folder the logscan user can read (pytest's tmp_path is root's alone).
    work = Path(tempfile.mkdtemp(prefix="logscan-deb-"))
    work.chmod(0o755)
    log = work / "SMTP-Activity.log"
    shutil.copyfile(REAL_LOG, log)
    log.chmod(0o644)
    port = free_port()
    config = work / "logscan.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n[state]\ndir = "{STATE}"\nsave_interval = 1.0\n\n'
        f'[daemon]\npoll_interval = 0.5\ntimezone = "America/Chicago"\n\n'
        f'[[logs]]\nname = "me"\npath = "{log}"\nformat = "mailenable"\nstart_at = "beginning"\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    daemon_log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        # setpriv execs (runuser would stay as a parent): the signals below reach the daemon.
        ["setpriv", "--reuid=logscan", "--regid=logscan", "--init-groups", "--",
         "/usr/bin/logscan", "run", "--config", str(config)],
        stdout=daemon_log, stderr=subprocess.STDOUT, env=ENV, cwd="/",
    )  # fmt: skip
    try:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        first_scrape = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and daemon.poll() is None:
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if not first_scrape and replies(samples, log="me") > 0:
                first_scrape = time.monotonic() - started  # /metrics answers with counted lines
            if replies(samples, log="me") == 4633:  # the last reply of the log: all of it read
                break
            time.sleep(0.05)
        whole_log = time.monotonic() - started
        assert daemon.poll() is None, (work / "daemon.log").read_text()
        assert replies(samples, log="me") == 4633, (work / "daemon.log").read_text()
        assert replies(samples, log="me", direction="inbound", code="530") == 425
        assert replies(samples, log="me", direction="outbound", code="250") == 220
        print(f"\ninstall {installed:.1f} s, to the first scrape with counted lines {first_scrape:.1f} s, "
              f"to all 5,344 lines counted {whole_log:.1f} s")  # fmt: skip
        assert run("ps", "-o", "user=", "-p", str(daemon.pid)).stdout.split() == ["logscan"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, (work / "daemon.log").read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        daemon_log.close()
    state_file = STATE / "state.json"
    assert mode(state_file)[1:] == ("logscan", "logscan")

    # --- what the package put on the machine --------------------------------------------
    done = run("/usr/bin/logscan", "--version")
    assert done.stdout.strip() == f"logscan {logscan.__version__} ({paths_text()})"
    assert done.stdout.strip().endswith(", sketches: C)")  # the .deb builds every C extension
    assert "postfix: C" in scan_paths_text()
    assert "Python bulk" not in scan_paths_text()
    assert "OK" in run("logscan", "check-config", "--config", CONF).stdout
    verify = run("systemd-analyze", "verify", UNIT, check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    assert "ExecStart=/usr/bin/logscan run --config /etc/logscan/logscan.toml\n" in UNIT.read_text()
    user = pwd.getpwnam("logscan")
    assert (user.pw_dir, user.pw_shell) == ("/var/lib/logscan", "/usr/sbin/nologin")
    assert mode(CONF.parent) == ("0o750", "root", "logscan")
    assert mode(CONF) == ("0o640", "root", "logscan")
    assert mode(STATE) == ("0o700", "logscan", "logscan")
    assert WANTS.is_symlink()  # enabled, the Debian way, for the next boot
    assert os.path.realpath(VENV / "bin" / "python") == os.path.realpath("/usr/bin/python3")
    assert list(VENV.rglob("*.pyc"))  # byte-compiled by postinst

    # --- an upgrade (the same version again) keeps a changed config and the state -------
    changed = CONF.read_text() + "# changed by the operator\n"
    CONF.write_text(changed)
    run("apt-get", "install", "-y", "--reinstall", f"./{deb.relative_to(REPO)}")
    assert CONF.read_text() == changed
    assert not list(CONF.parent.glob("*.dpkg-*"))
    assert mode(CONF) == ("0o640", "root", "logscan")
    assert state_file.exists()

    # --- remove: the program goes, config and state stay ---------------------------------
    run("apt-get", "remove", "-y", "logscan")
    assert status() == "deinstall ok config-files"
    assert not Path("/usr/bin/logscan").exists()
    assert not VENV.exists()
    assert not UNIT.exists()
    assert CONF.read_text() == changed
    assert state_file.exists()

    # --- purge: config, state, statoverrides and the enablement go; the user stays -------
    run("apt-get", "purge", "-y", "logscan")
    assert status() == ""
    assert not CONF.parent.exists()
    assert not STATE.exists()
    assert not WANTS.exists()
    assert run("dpkg-statoverride", "--list", "/etc/logscan*", check=False).stdout == ""
    assert pwd.getpwnam("logscan")  # as Debian leaves system users: files may still name it
    shutil.rmtree(work)
