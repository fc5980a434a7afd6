"""The systemd unit, sysusers.d and tmpfiles.d files, checked by systemd's own tools."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "logscan.service"
SYSUSERS = REPO / "systemd" / "logscan.sysusers.conf"
TMPFILES = REPO / "systemd" / "logscan.tmpfiles.conf"
EXEC_START = "/usr/local/bin/logscan run --config /etc/logscan/logscan.toml"
MAX_EXPOSURE = 2.0


def systemd_tool(name: str) -> str:
    """Path of a systemd binary; a missing one fails the test (CI installs the systemd package)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's 'systemd' package (apt-get install systemd)")
    return path


def service_settings(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs of the [Service] section, in order; keys may repeat as in systemd."""
    pairs: list[tuple[str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def verifiable_copy(tmp_path: Path, *, typo: tuple[str, str] = ("", "")) -> Path:
    """The unit with ExecStart's binary swapped for `true`, which verify can find.

    verify insists that ExecStart's binary exists, and where logscan lives differs per
    machine (/usr/local/bin, a venv); test_exec_start_is_the_documented_command pins the
    real line.
    """
    true = shutil.which("true")
    assert true is not None
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    text = text.replace("ExecStart=/usr/local/bin/logscan ", f"ExecStart={true} ").replace(*typo)
    copy = tmp_path / "logscan.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def test_verify_reports_nothing(tmp_path: Path) -> None:
    done = verify(verifiable_copy(tmp_path))
    # Unknown or misspelt keys are only warnings (exit 0): any output at all is a finding.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_verify_catches_a_misspelt_key(tmp_path: Path) -> None:
    # Guards the test above: it must notice the kind of mistake it exists for.
    done = verify(verifiable_copy(tmp_path, typo=("ProtectClock=yes", "ProtectClok=yes")))
    assert "Unknown key" in done.stderr


def exposure(unit: Path) -> float:
    done = subprocess.run(
        [systemd_tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, f"no exposure level in systemd-analyze output:\n{done.stdout}\n{done.stderr}"
    return float(match.group(1))


def test_security_exposure_below_2() -> None:
    score = exposure(UNIT)
    assert score < MAX_EXPOSURE, f"systemd-analyze security exposure {score} >= {MAX_EXPOSURE}"


def test_exposure_parser_sees_a_weak_unit(tmp_path: Path) -> None:
    # An unhardened unit scores high: the score above is read, not defaulted.
    weak = tmp_path / "weak.service"
    weak.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    assert exposure(weak) > 9.0


def test_unit_promises_what_the_daemon_implements() -> None:
    settings = service_settings(UNIT.read_text(encoding="utf-8"))
    single = dict(settings)
    assert single["Type"] == "notify"
    assert single["NotifyAccess"] == "main"
    assert single["WatchdogSec"] == "30s"
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert single["Restart"] == "on-failure"
    assert single["User"] == "logscan"
    assert single["DynamicUser"] == "no"
    # adm: /var/log/mail.log; systemd-journal: the journal source (issue 13).
    assert set(single["SupplementaryGroups"].split()) == {"adm", "systemd-journal"}
    assert single["StateDirectory"] == "logscan"
    assert single["CapabilityBoundingSet"] == ""
    assert single["AmbientCapabilities"] == ""
    assert single["IPAddressDeny"] == "any"
    # AF_UNIX carries sd_notify; dropping it would make Type=notify time out at start.
    assert "AF_UNIX" in single["RestrictAddressFamilies"].split()


def test_exec_start_is_the_documented_command() -> None:
    settings = service_settings(UNIT.read_text(encoding="utf-8"))
    assert [v for k, v in settings if k == "ExecStart"] == [EXEC_START]
    # The subcommand and option the unit uses must exist in the CLI.
    done = subprocess.run(
        [sys.executable, "-m", "logscan", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout


def test_sysusers_creates_the_logscan_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [systemd_tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc/passwd").read_text(encoding="utf-8")
    users = {fields[0]: fields for fields in (line.split(":") for line in passwd.splitlines())}
    assert users["logscan"][5:] == ["/var/lib/logscan", "/usr/sbin/nologin"]
    assert 0 < int(users["logscan"][2]) < 1000  # a system user


def test_tmpfiles_makes_config_dir_readable_to_logscan_only(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("root:x:0:\nlogscan:x:987:\n", encoding="utf-8")
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n", encoding="utf-8")
    done = subprocess.run(
        [systemd_tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", str(TMPFILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    info = (tmp_path / "etc/logscan").stat()
    assert (oct(info.st_mode & 0o777), info.st_uid, info.st_gid) == ("0o750", 0, 987)


# Run in a child under the kernel's own W^X switch, prctl(PR_SET_MDWE) (Linux >= 6.3), which
# refuses the same mappings as systemd's MemoryDenyWriteExecute= seccomp filter.
MDWE_CHILD = r"""
import ctypes, mmap, os, pkgutil, importlib, tempfile, time, urllib.request
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    raise SystemExit("prctl(PR_SET_MDWE) failed: " + os.strerror(ctypes.get_errno()))
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("W+X mapping was allowed: MDWE not in force")
except PermissionError:
    pass

import bcrypt, msgspec, prometheus_client, structlog
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
import logscan
for module in pkgutil.walk_packages(logscan.__path__, "logscan."):
    if module.name not in ("logscan.__main__",):
        importlib.import_module(module.name)

assert bcrypt.checkpw(b"pw", bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)))
assert msgspec.json.decode(msgspec.json.encode({"code": "551"})) == {"code": "551"}

seen = []
class Handler(FileSystemEventHandler):
    def on_any_event(self, event):
        seen.append(event.event_type)
with tempfile.TemporaryDirectory() as folder:
    observer = Observer()
    observer.schedule(Handler(), folder)
    observer.start()
    with open(os.path.join(folder, "mail.log"), "w") as f:
        f.write("line\n")
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    observer.stop()
    observer.join()
assert seen, "watchdog saw no event"

server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1")
port = server.server_address[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
    assert b"python_info" in reply.read()
server.shutdown()
print("OK")
"""


def test_cpython_and_dependencies_work_without_write_execute_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MDWE_CHILD], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert (done.returncode, done.stdout.strip()) == (0, "OK"), done.stderr


def expand_syscall_set(name: str, seen: set[str] | None = None) -> set[str]:
    """System calls in a systemd set such as @system-service, nested sets resolved."""
    seen = set() if seen is None else seen
    seen.add(name)
    done = subprocess.run(
        [systemd_tool("systemd-analyze"), "syscall-filter", "--no-pager", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    calls: set[str] = set()
    for raw in done.stdout.splitlines()[1:]:
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("@"):
            if item not in seen:
                calls |= expand_syscall_set(item, seen)
        else:
            calls.add(item)
    return calls


@functools.cache
def unit_syscall_allowlist() -> frozenset[str]:
    """What the unit's two SystemCallFilter= lines leave allowed: an allow list, then removals."""
    lines = [v for k, v in service_settings(UNIT.read_text(encoding="utf-8")) if k == "SystemCallFilter"]
    assert lines == ["@system-service", "~@privileged @resources"]
    allowed = expand_syscall_set("@system-service")
    for group in lines[1].removeprefix("~").split():
        allowed -= expand_syscall_set(group)
    return frozenset(allowed)


# Applies, in this order, what the unit asks of the kernel: NoNewPrivileges=, the W^X rule of
# MemoryDenyWriteExecute= (via PR_SET_MDWE), SystemCallFilter= with SystemCallErrorNumber=EPERM
# and RestrictAddressFamilies= (via libseccomp, the library systemd itself uses), then execs
# argv. setpriv drops all capabilities first (CapabilityBoundingSet=). argv[1] is a file with
# the allowed calls.
SANDBOX = r"""
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(ok, what):
    if not ok:
        raise SystemExit(f"sandbox: {what} failed: {os.strerror(ctypes.get_errno())}")
check(libc.prctl(38, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS")
check(libc.prctl(65, 1, 0, 0, 0) == 0, "PR_SET_MDWE")
seccomp = ctypes.CDLL("libseccomp.so.2")
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
seccomp.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(EPERM)
ctx = seccomp.seccomp_init(EPERM)
check(ctx, "seccomp_init")
with open(sys.argv[1]) as names:
    for name in names.read().split():
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number >= 0 and name != "socket":  # sets name calls of other architectures too
            check(seccomp.seccomp_rule_add(ctx, ALLOW, number, 0) == 0, f"allow {name}")
# RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX: socket() only for these families.
SOCKET = seccomp.seccomp_syscall_resolve_name(b"socket")
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    equal = ArgCmp(0, 4, int(family), 0)  # arg 0, SCMP_CMP_EQ
    rule = seccomp.seccomp_rule_add_array(ctx, ALLOW, SOCKET, 1, equal)
    check(rule == 0, f"allow socket({family.name})")
check(seccomp.seccomp_load(ctx) == 0, "seccomp_load")
os.execv(sys.argv[2], sys.argv[2:])
"""


def sandboxed(tmp_path: Path, *argv: str) -> list[str]:
    allow = tmp_path / "syscalls.allow"
    allow.write_text("\n".join(sorted(unit_syscall_allowlist())), encoding="utf-8")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) not found"
    return [
        setpriv, "--bounding-set=-all", "--inh-caps=-all", "--",
        sys.executable, "-c", SANDBOX, str(allow), *argv,
    ]  # fmt: skip


def test_sandbox_enforces_the_unit_filter(tmp_path: Path) -> None:
    # Negative control: a call the unit removes (@resources) fails, one it keeps works.
    probe = "import os; os.sched_getaffinity(0); os.sched_setaffinity(0, os.sched_getaffinity(0))"
    done = subprocess.run(
        sandboxed(tmp_path, sys.executable, "-c", probe), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "PermissionError: [Errno 1] Operation not permitted" in done.stderr


def test_sandbox_restricts_address_families(tmp_path: Path) -> None:
    probe = (
        "import socket\n"
        "for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):\n"
        "    socket.socket(family, socket.SOCK_DGRAM).close()\n"
        "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\n"
    )
    done = subprocess.run(
        sandboxed(tmp_path, sys.executable, "-c", probe), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert 'File "<string>", line 4' in done.stderr  # the AF_NETLINK line; the others passed
    assert "PermissionError" in done.stderr


@pytest.mark.slow
def test_daemon_runs_under_the_units_kernel_restrictions(tmp_path: Path) -> None:
    """`logscan run` with the unit's syscall filter, W^X, no capabilities: starts, serves, reloads, stops."""
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 29 08:00:01 mx postfix/smtp[1]: ABC123: to=<a@example.org>, relay=mx.example.org"
        "[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (551 5.1.1 not local)\n",
        encoding="utf-8",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "logscan.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{tmp_path / "state"}"\n'
        f'[daemon]\npoll_interval = 0.2\n[[logs]]\nname = "postfix"\npath = "{log}"\n'
        'format = "postfix"\nstart_at = "beginning"\n',
        encoding="utf-8",
    )
    output = tmp_path / "daemon.out"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify.sock"))
        manager.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
        argv = sandboxed(tmp_path, sys.executable, "-m", "logscan", "run", "--config", str(config))
        with output.open("wb") as sink:
            daemon = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            assert manager.recv(4096).startswith(b"READY=1")
            status = Path(f"/proc/{daemon.pid}/status").read_text(encoding="utf-8")
            for line in ("NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t0000000000000000"):
                assert line in status.splitlines(), status
            deadline = time.monotonic() + 10
            body = ""
            while "logscan_smtp_replies_total" not in body and time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                    body = reply.read().decode("utf-8")
                time.sleep(0.1)
            assert 'code="551"' in body
            daemon.send_signal(signal.SIGHUP)
            messages = [manager.recv(4096) for _ in range(4)]
            assert any(m.startswith(b"RELOADING=1") for m in messages), messages
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=25) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = output.read_text(encoding="utf-8", errors="replace")
    for sign in ("Traceback", "Operation not permitted", "PermissionError"):
        assert sign not in text, text
