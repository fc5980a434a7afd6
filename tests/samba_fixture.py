"""A throwaway Samba server on a loopback port, run by the test as a foreground smbd."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

SMBD = shutil.which("smbd") or "/usr/sbin/smbd"
PASSWORD = "s3cret-Test-pw"


class Samba:
    """smbd on 127.0.0.1:`port` sharing `root/share` as [logs] to this Unix user, state under `root`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.share = root / "share"
        self.user = getpass.getuser()
        self.proc: subprocess.Popen[bytes] | None = None
        for d in ("share", "private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.conf = root / "smb.conf"
        self.conf.write_text(
            "[global]\n"
            f"  smb ports = {port}\n  bind interfaces only = yes\n  interfaces = 127.0.0.1\n"
            + "".join(f"  {key} = {root / d}\n" for key, d in (
                ("private dir", "private"), ("lock directory", "lock"), ("state directory", "state"),
                ("cache directory", "cache"), ("pid directory", "pid"), ("ncalrpc dir", "ncalrpc")))
            + f"  log file = {root / 'log' / 'smbd.log'}\n"
            f"  passdb backend = tdbsam:{root / 'private' / 'passdb.tdb'}\n"
            "  server role = standalone server\n  load printers = no\n  printcap name = /dev/null\n"
            "  disable spoolss = yes\n  map to guest = never\n  server min protocol = SMB2_10\n"
            f"[logs]\n  path = {self.share}\n  read only = yes\n  valid users = {self.user}\n"
        )
        # The user's password goes into the private passdb above, not the system's.
        subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a", self.user],
                       input=f"{PASSWORD}\n{PASSWORD}\n".encode(), check=True, capture_output=True)

    def credentials(self, mode: int = 0o600) -> Path:
        path = self.root / "smb.cred"
        path.write_text(f"username={self.user}\npassword={PASSWORD}\n")
        path.chmod(mode)
        return path

    def url(self, glob: str = "SMTP-Activity-*.log") -> str:
        return f"smb://127.0.0.1:{self.port}/logs/Logging/SMTP/{glob}"

    def start(self) -> None:
        out = (self.root / "log" / "smbd.out").open("ab")
        self.proc = subprocess.Popen(
            [SMBD, "--foreground", "--no-process-group", "--debug-stdout", "-s", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # smbd signals its whole process group when it stops: never the test's group.
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"smbd exited {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("smbd did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
