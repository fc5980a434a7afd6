"""systemd's sd_notify protocol: readiness, status and watchdog keep-alives (sd_notify(3))."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog_interval", "watchdog_ping"]


def _address(env: Mapping[str, str]) -> str | None:
    """The socket address in $NOTIFY_SOCKET, '@' turned into Linux's abstract-namespace NUL."""
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]
    # systemd also knows vsock: addresses (for VMs); a daemon on a mail server never gets one.
    return path if path.startswith("/") else None


def _line(key: str, value: object) -> str:
    # A newline inside a value would start a new assignment: STATUS= text carries log names.
    text = str(value).replace("\n", " ")
    return f"{key.upper()}={text}"


def notify(*assignments: str, env: Mapping[str, str] | None = None, **fields: object) -> bool:
    """Send assignments ("READY=1") and fields (status="...") to systemd as one datagram.

    Returns False, sending nothing, outside systemd; raises OSError if systemd's socket fails.
    """
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    lines = [a.replace("\n", " ") for a in assignments]
    lines += [_line(key, value) for key, value in fields.items()]
    if not lines:
        return False
    # A fresh socket per message: nothing to keep open across fork, reload or a systemd restart.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto("\n".join(lines).encode("utf-8"), address)
    return True


def ready(status_text: str = "") -> bool:
    """Tell systemd that start-up is done (logs open, port bound), with an optional status."""
    return notify("READY=1", status=status_text) if status_text else notify("READY=1")


def status(text: str) -> bool:
    """Set the one-line status shown by `systemctl status logscan`."""
    return notify(status=text)


def reloading() -> bool:
    """Announce a SIGHUP reload; send ready() when it is done."""
    # MONOTONIC_USEC lets systemd >= 253 match this reload with its own request.
    return notify("RELOADING=1", monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)


def stopping(status_text: str = "") -> bool:
    """Announce that shutdown (drain and save) has begun."""
    return notify("STOPPING=1", status=status_text) if status_text else notify("STOPPING=1")


def watchdog_ping() -> bool:
    """Keep-alive; send it from the main loop so that a stuck loop stops the pings."""
    return notify("WATCHDOG=1")


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """systemd's watchdog timeout in seconds (WatchdogSec=), or None when not asked for.

    Ping at least every half of it, as sd_watchdog_enabled(3) advises.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    # WATCHDOG_PID says which process systemd watches; a child that inherited it must not ping.
    watched = env.get("WATCHDOG_PID", "")
    if watched and (not watched.isdigit() or int(watched) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 1_000_000
