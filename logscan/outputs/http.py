"""HTTP face of the daemon: /metrics, /, /healthz, /ready, /diagnosis, with optional TLS and basic auth.

TLS and authentication follow the Prometheus exporter-toolkit web-config file, so the
same file (and the same operator habits) work for logscan and node_exporter alike.

The server is aiohttp's low-level HTTP server on an asyncio loop in its own thread
(docs/decisions/0010-http-server-hostile.md): thousands of idle connections cost a few KB
each, every connection must send a complete request head within `head_timeout_s` of its
start (TLS handshake included) or of its first byte after a keep-alive pause, and a head
is bounded in bytes, line length and header count.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import functools
import gzip
import hashlib
import html
import ipaddress
import json
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

import bcrypt
import structlog
import yaml
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_exposition
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.openmetrics import exposition as om_exposition

from logscan import __version__
from logscan.core.aggregate import paths_text
from logscan.core.diagnosis import diagnosis_html
from logscan.outputs.metrics import LogscanRegistry

DEFAULT_LISTEN: Final = "127.0.0.1:9551"
Ready = Callable[[], tuple[bool, str]]

_log = structlog.get_logger("logscan.web")

_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's crypto/tls can ask for a certificate without verifying it; Python's ssl cannot, and
# an unverified certificate authenticates nobody, so these are refused rather than weakened.
_CLIENT_AUTH_REFUSED: Final = frozenset({"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"})
_HEADERS: Final = frozenset(
    {
        "Content-Security-Policy",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "X-XSS-Protection",
        "Strict-Transport-Security",
    }
)
_TLS_KEYS: Final = frozenset(
    {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "client_allowed_sans",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
    }
)
# Keys of the toolkit format that logscan knows but does not implement: refusing them beats
# silently serving with a weaker setting than the operator wrote down.
_UNSUPPORTED: Final = {
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.cipher_suites": "Go cipher-suite names do not map onto OpenSSL; remove the key",
    "tls_server_config.curve_preferences": "curve preferences are not supported; remove the key",
    "rate_limit": "rate limiting is not supported; put a reverse proxy in front",
}


# A bcrypt hash of a random string: unknown users still cost one bcrypt check, so response
# time does not tell which user names exist (exporter-toolkit does the same).
@functools.cache
def _decoy_hash() -> bytes:
    return bcrypt.hashpw(b"logscan-decoy", bcrypt.gensalt(rounds=10))  # made on first use, not at import


_AUTH_CACHE_SIZE: Final = 256


class WebConfigError(ValueError):
    """The web-config file is unreadable or invalid; the message names the file and key."""


class ListenError(OSError):
    """The listen address could not be bound (in use, not local, no permission)."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """tls_server_config, resolved: paths are absolute, versions and auth mode are ssl enums."""

    cert_file: Path
    key_file: Path
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: Path | None = None
    client_ca: str = ""
    client_allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True

    def context(self) -> ssl.SSLContext:
        """A server SSLContext; raises WebConfigError when a file does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        ctx.maximum_version = self.max_version
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file is not None:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            if self.client_ca:
                ctx.load_verify_locations(cadata=self.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"cannot load TLS material ({self.cert_file}, {self.key_file}): {exc}"
            ) from exc
        ctx.verify_mode = self.client_auth
        return ctx


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The parsed web-config file: TLS, basic-auth users (bcrypt hashes), response headers."""

    source: Path | None = None
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None


def parse_listen(s: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); `:port` means every address."""
    host, sep, port_s = s.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"listen address {s!r}: expected host:port or [ipv6]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"listen address {s!r}: {host!r} is not an IPv6 address") from exc
    elif ":" in host:
        raise ValueError(f"listen address {s!r}: write IPv6 addresses in brackets, e.g. [::1]:9551")
    return host, int(port_s)


def _mapping(value: object, where: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{path}: {where} must be a mapping")
    return value


def _str(value: object, where: str, path: Path) -> str:
    if not isinstance(value, str):
        raise WebConfigError(f"{path}: {where} must be a string")
    return value


def _check_keys(section: Mapping[str, Any], prefix: str, allowed: frozenset[str], path: Path) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if name in _UNSUPPORTED:
            raise WebConfigError(f"{path}: key {name!r}: {_UNSUPPORTED[name]}")
        if key not in allowed:
            raise WebConfigError(f"{path}: unknown key {name!r} (allowed: {', '.join(sorted(allowed))})")


def _tls(section: Mapping[str, Any], path: Path) -> TLSSettings | None:
    _check_keys(section, "tls_server_config.", _TLS_KEYS, path)
    if not section:
        return None
    where = "tls_server_config."

    def file(key: str) -> Path | None:
        if section.get(key) in (None, ""):
            return None
        # Relative paths are relative to the web-config file, as in exporter-toolkit.
        return path.parent / _str(section[key], where + key, path)

    cert, key = file("cert_file"), file("key_file")
    if cert is None or key is None:
        raise WebConfigError(f"{path}: tls_server_config needs both cert_file and key_file")
    auth_name = _str(section.get("client_auth_type") or "NoClientCert", where + "client_auth_type", path)
    if auth_name in _CLIENT_AUTH_REFUSED:
        raise WebConfigError(
            f"{path}: client_auth_type {auth_name!r} accepts unverified certificates and is not supported;"
            " use RequireAndVerifyClientCert (or VerifyClientCertIfGiven)"
        )
    if auth_name not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{path}: client_auth_type {auth_name!r} is not one of {', '.join(_CLIENT_AUTH)}"
        )
    client_auth = _CLIENT_AUTH[auth_name]
    ca_file = file("client_ca_file")
    ca_text = _str(section.get("client_ca") or "", where + "client_ca", path)
    has_ca = ca_file is not None or bool(ca_text)
    if has_ca and client_auth == ssl.CERT_NONE:
        raise WebConfigError(f"{path}: client CA configured but client_auth_type is NoClientCert")
    if not has_ca and client_auth != ssl.CERT_NONE:
        raise WebConfigError(f"{path}: client_auth_type {auth_name} needs client_ca_file")
    sans_raw = section.get("client_allowed_sans") or []
    if not isinstance(sans_raw, list):
        raise WebConfigError(f"{path}: tls_server_config.client_allowed_sans must be a list")
    sans = tuple(_str(v, where + "client_allowed_sans", path) for v in sans_raw)
    if sans and client_auth != ssl.CERT_REQUIRED:
        raise WebConfigError(f"{path}: client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    versions = {}
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = _str(section.get(k) or default, where + k, path)
        if v not in _TLS_VERSIONS:
            raise WebConfigError(f"{path}: {where}{k} {v!r} is not one of {', '.join(_TLS_VERSIONS)}")
        versions[k] = _TLS_VERSIONS[v]
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{path}: {where}prefer_server_cipher_suites must be true or false")
    return TLSSettings(
        cert_file=cert,
        key_file=key,
        client_auth=client_auth,
        client_ca_file=ca_file,
        client_ca=ca_text,
        client_allowed_sans=sans,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        prefer_server_cipher_suites=prefer,
    )


def _users(section: Mapping[str, Any], path: Path) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        h = _str(hashed, f"basic_auth_users.{user}", path).encode()
        try:
            # checkpw validates the hash format; a bad hash must fail at load, not at 3 a.m.
            bcrypt.checkpw(b"", h)
        except ValueError as exc:
            raise WebConfigError(f"{path}: basic_auth_users.{user} is not a bcrypt hash") from exc
        users[user] = h
    return users


def load_web_config(path: Path) -> WebConfig:
    """Read an exporter-toolkit web-config file; raises WebConfigError naming file and key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {exc}") from exc
    top = _mapping(raw, "the file", path)
    _check_keys(top, "", frozenset({"tls_server_config", "http_server_config", "basic_auth_users"}), path)
    http = _mapping(top.get("http_server_config"), "http_server_config", path)
    # http2 is accepted for compatibility with files written for Go exporters; logscan
    # speaks HTTP/1.1, which every Prometheus scrapes.
    _check_keys(http, "http_server_config.", frozenset({"http2", "headers"}), path)
    headers = {
        k: _str(v, f"http_server_config.headers.{k}", path)
        for k, v in _mapping(http.get("headers"), "http_server_config.headers", path).items()
    }
    for k in headers:
        if k not in _HEADERS:
            raise WebConfigError(f"{path}: unknown key 'http_server_config.headers.{k}'")
    tls = _tls(_mapping(top.get("tls_server_config"), "tls_server_config", path), path)
    users = _users(_mapping(top.get("basic_auth_users"), "basic_auth_users", path), path)
    return WebConfig(
        source=path,
        tls=tls,
        users=users,
        headers=headers,
        ssl_context=_context(tls, path) if tls else None,
    )


def _context(tls: TLSSettings, path: Path) -> ssl.SSLContext:
    try:
        return tls.context()
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from exc


class _BasicAuth:
    """bcrypt checks with a bounded cache; bcrypt is slow on purpose and scrapes come every few seconds."""

    def __init__(self) -> None:
        self._cache: dict[bytes, bool] = {}
        self._lock = threading.Lock()
        # One bcrypt at a time: a flood of wrong passwords must not take every CPU.
        self._bcrypt = threading.Lock()

    def cached(self, users: Mapping[str, bytes], user: str, password: str) -> bool | None:
        """The cached verdict, or None when only a bcrypt check (slow: off the event loop) can tell."""
        hashed = users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or _decoy_hash(), password.encode()))).digest()
        with self._lock:
            ok = self._cache.get(key)
        return None if ok is None else ok and hashed is not None

    def check(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        hashed = users.get(user)
        known = hashed is not None
        h = hashed if hashed is not None else _decoy_hash()
        key = hashlib.sha256(b"\0".join((user.encode(), h, password.encode()))).digest()
        with self._lock:
            ok = self._cache.get(key)
        if ok is None:
            with self._bcrypt:
                ok = bcrypt.checkpw(password.encode(), h)
            with self._lock:
                if len(self._cache) >= _AUTH_CACHE_SIZE:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = ok
        return ok and known


def _parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


_LANDING: Final = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>logscan</title></head>
<body><h1>logscan {version}</h1>
<p>Mail-log analyzer: SMTP replies and delivery outcomes as Prometheus metrics.</p>
<p>Scan path per format: {paths}.</p>
<ul><li><a href="metrics">metrics</a></li><li><a href="healthz">healthz</a></li>
<li><a href="ready">ready</a></li><li><a href="diagnosis">diagnosis</a> (why refusals happen)</li></ul>
{diagnosis}</body></html>
"""
_PATHS: Final = html.escape(paths_text())


DEFAULT_HEAD_TIMEOUT_S: Final = 10.0
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_CONNECTIONS: Final = 4096
DEFAULT_MAX_HEAD_BYTES: Final = 64 * 1024
_MAX_HEADERS: Final = 64
_FD_RESERVE: Final = 256  # descriptors kept for logs, state, notify and the watcher
_SCRAPE_THREADS: Final = 2

# aiohttp logs every malformed request at ERROR with a traceback: on a port the internet
# can reach that is noise an attacker controls. Our own handler logs what matters.
_aiohttp_log = logging.getLogger("logscan.outputs.http.aiohttp")
_aiohttp_log.setLevel(logging.CRITICAL + 1)
_aiohttp_log.propagate = False

_431: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
)


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit now in force.

    Under the systemd unit setrlimit is filtered (@resources): LimitNOFILE= sets it there.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            code = errno.errorcode.get(getattr(exc, "errno", 0) or 0, "refused")
            _log.debug("nofile_limit_kept", soft=soft, hard=hard, reason=code)
    return soft


class _AioHandler(RequestHandler):
    """aiohttp's connection protocol, with oversized heads answered 431 instead of 400."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        ):
            status, message = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request Header Fields Too Large"
        if status < 500:
            _log.debug("bad request", status=status, error=str(exc))
        return super().handle_error(request, status, exc, message)


class _Conn(asyncio.Protocol):
    """One client connection: deadline for the request head, optional TLS, then aiohttp's parser.

    States: "head" (waiting for a complete request head: the deadline runs and bytes are
    counted), "busy" (a request is being answered), "idle" (keep-alive, between requests:
    aiohttp's keep-alive timeout closes it). The first byte of a new request moves idle → head.
    """

    def __init__(self, core: _Core) -> None:
        self._core = core
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.Transport | None = None  # what aiohttp writes to (the TLS one with TLS)
        self._http: _AioHandler | None = None
        self._early: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._state = "head"
        self._head_bytes = 0
        self._closed = False

    # -- the raw connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        core = self._core
        self._arm()
        core.add(self)
        if self._closed:  # the cap was reached and no older silent connection could go
            return
        ctx = core.web().ssl_context
        if ctx is None:
            self._attach(transport)
        else:
            transport.pause_reading()  # no byte may reach us before start_tls takes the socket
            core.spawn(self._handshake(transport, ctx))

    async def _handshake(self, raw: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw, self, ctx, server_side=True, ssl_handshake_timeout=self._core.head_timeout_s
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError) as exc:
            _log.debug("tls handshake failed", error=str(exc))
            raw.abort()
            return
        if tls is None or self._closed:
            raw.abort()
            return
        assert isinstance(tls, asyncio.Transport)
        if not self._core.san_allowed(tls):
            tls.abort()
            raw.abort()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        self._app = transport
        self._http = self._core.http_protocol()
        self._core.by_transport[transport] = self
        self._http.connection_made(transport)
        early, self._early = self._early, []
        for chunk in early:
            self.data_received(chunk)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._http is None:
            self._early.append(data)
            return
        if self._state == "idle":
            self._state, self._head_bytes = "head", 0
            self._arm()
        if self._state == "head":
            self._head_bytes += len(data)
            if self._head_bytes > self._core.max_head_bytes:
                self._refuse(_431)
                return
        self._http.data_received(data)

    def eof_received(self) -> bool | None:
        if self._http is not None:
            self._http.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._http is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._http is not None:
            self._http.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._disarm()
        self._core.remove(self)
        if self._app is not None:
            self._core.by_transport.pop(self._app, None)
        if self._http is not None:
            self._http.connection_lost(exc)
            self._http = None

    # -- the head deadline -------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._core.head_timeout_s, self._expire)
        self._core.waiting(self, True)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._state == "head":
            _log.debug("no complete request head in time: closed", seconds=self._core.head_timeout_s)
            self.abort()

    def head_done(self) -> None:
        """aiohttp parsed a complete head: stop the deadline until the next request starts."""
        self._disarm()
        self._state = "busy"
        self._core.waiting(self, False)

    def response_done(self) -> None:
        if self._state == "busy":
            self._state = "idle"
            # A client that asks and never reads would pin its response in our buffer: if
            # any of it is still unsent when the keep-alive time is over, drop the connection.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._core.server.idle_timeout_s, self._check_drained)

    def _check_drained(self) -> None:
        self._timer = None
        if self._app is not None and self._app.get_write_buffer_size() > 0:
            _log.debug("client does not read its response: closed")
            self.abort()

    def _refuse(self, response: bytes) -> None:
        self._closed = True
        transport = self._app or self._raw
        if transport is not None:
            transport.write(response)
            transport.close()

    def abort(self) -> None:
        self._closed = True
        self._disarm()
        for t in (self._app, self._raw):
            if t is not None:
                t.abort()


class _Core:
    """What the event-loop side shares: settings, the live connections, the executors."""

    def __init__(self, server: MetricsServer, max_connections: int) -> None:
        self.server = server
        self.web = server.web_config
        self.head_timeout_s = server.head_timeout_s
        self.max_head_bytes = server.max_head_bytes
        self.max_connections = max_connections
        self.conns: set[_Conn] = set()
        self.pending: dict[_Conn, None] = {}  # waiting for a head, oldest first
        self.by_transport: dict[asyncio.BaseTransport, _Conn] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.scrapes = ThreadPoolExecutor(_SCRAPE_THREADS, thread_name_prefix="logscan-scrape")
        self.bcrypt = ThreadPoolExecutor(1, thread_name_prefix="logscan-bcrypt")
        self.auth = _BasicAuth()
        self.landing = _LANDING.format(version=html.escape(__version__), paths=_PATHS, diagnosis="").encode()
        self._aio: web.Server | None = None
        self.listener: asyncio.AbstractServer | None = None
        self._kwargs: dict[str, Any] = {
            "keepalive_timeout": server.idle_timeout_s,
            "max_line_size": 8190,
            "max_field_size": 8190,
            "max_headers": _MAX_HEADERS,
            "access_log": None,
            "logger": _aiohttp_log,
            "lingering_time": 1.0,
        }

    def http_protocol(self) -> _AioHandler:
        if self._aio is None:
            self._aio = web.Server(self.handle, loop=asyncio.get_running_loop())
        return _AioHandler(self._aio, loop=asyncio.get_running_loop(), **self._kwargs)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def add(self, conn: _Conn) -> None:
        self.conns.add(conn)
        if len(self.conns) > self.max_connections:
            # Full: drop the oldest connection that has not sent a request yet (the likely
            # attacker), so a scraper that does send one still gets in.
            victim = next(iter(self.pending), conn)
            _log.debug(
                "connection limit reached: oldest waiting connection closed", limit=self.max_connections
            )
            victim.abort()
            self.remove(victim)

    def remove(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        self.pending.pop(conn, None)

    def waiting(self, conn: _Conn, on: bool) -> None:
        if on:
            self.pending.pop(conn, None)
            self.pending[conn] = None
        else:
            self.pending.pop(conn, None)

    def san_allowed(self, tls: asyncio.Transport) -> bool:
        settings = self.web().tls
        if settings is None or not settings.client_allowed_sans:
            return True
        cert = tls.get_extra_info("peercert") or {}
        pairs: Any = cert.get("subjectAltName", ())  # (("DNS", "x"), ("IP Address", "1.2.3.4"), ...)
        sans = {str(pair[1]) for pair in pairs}
        if sans & set(settings.client_allowed_sans):
            return True
        _log.info("client certificate SAN not allowed", sans=sorted(sans))
        return False

    # -- requests ----------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = self.by_transport.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.head_done()
        try:
            return await self._respond(request)
        except Exception:
            _log.exception("request failed")
            return self._text(request, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        finally:
            if conn is not None:
                conn.response_done()

    def _send(
        self,
        status: int,
        ctype: str,
        payload: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> web.Response:
        headers = {
            "Server": f"logscan/{__version__}",
            "Content-Type": ctype,
            **self.web().headers,
            **(extra or {}),
        }
        return web.Response(status=status, body=payload, headers=headers)

    def _text(
        self, request: web.BaseRequest, status: int, text: str, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        return self._send(status, "text/plain; charset=utf-8", text.encode(), extra)

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self._text(
                request, HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed\n", {"Allow": "GET, HEAD"}
            )
        web_cfg = self.web()
        if web_cfg.users:
            creds = _parse_basic(request.headers.get("Authorization", ""))
            ok = False
            if creds is not None:
                verdict = self.auth.cached(web_cfg.users, *creds)
                if verdict is None:
                    loop = asyncio.get_running_loop()
                    verdict = await loop.run_in_executor(self.bcrypt, self.auth.check, web_cfg.users, *creds)
                ok = verdict
            if not ok:
                return self._text(
                    request,
                    HTTPStatus.UNAUTHORIZED,
                    "Unauthorized\n",
                    {"WWW-Authenticate": 'Basic realm="logscan", charset="UTF-8"'},
                )
        path = request.path
        if path == "/metrics":
            return await self._metrics(request)
        if path == "/":
            if self.server.diagnosis is None:
                return self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.landing)
            page = await asyncio.get_running_loop().run_in_executor(self.scrapes, self._landing_page)
            return self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)
        if path == "/diagnosis" and self.server.diagnosis is not None:
            body = await asyncio.get_running_loop().run_in_executor(self.scrapes, self.server.diagnosis)
            return self._send(HTTPStatus.OK, "application/json", body)
        if path == "/healthz":
            return self._text(request, HTTPStatus.OK, "OK\n")
        if path == "/ready":
            try:
                ok, reason = self.server.ready()
            except Exception as exc:
                _log.exception("ready check failed")
                ok, reason = False, f"ready check failed: {type(exc).__name__}"
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            return self._text(request, status, (reason or "OK") + "\n")
        return self._text(request, HTTPStatus.NOT_FOUND, "Not Found\n")

    def _landing_page(self) -> bytes:
        """The landing page with the diagnosis of the last hour; runs on a scrape thread."""
        assert self.server.diagnosis is not None
        part = diagnosis_html(json.loads(self.server.diagnosis()))
        return _LANDING.format(version=html.escape(__version__), paths=_PATHS, diagnosis=part).encode()

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        gz = gzip_accepted(request.headers.get("Accept-Encoding", ""))
        loop = asyncio.get_running_loop()
        try:
            output, ctype = await loop.run_in_executor(
                self.scrapes, _scrape, self.server.registry, accept, gz
            )
        except Exception:
            # A 5xx makes Prometheus record up=0: the failure is visible, not a silent gap.
            _log.exception("scrape failed")
            return self._text(
                request, HTTPStatus.INTERNAL_SERVER_ERROR, "scrape failed; see the logscan log\n"
            )
        extra = {"Vary": "Accept, Accept-Encoding"}
        if gz:
            extra["Content-Encoding"] = "gzip"
        return self._send(HTTPStatus.OK, ctype, output, extra)


_FAST_ESCAPING: Final = frozenset({"underscores", "allow-utf-8"})


def _scrape(registry: CollectorRegistry, accept: str, gz: bool) -> tuple[bytes, str]:
    """The scrape body (gzipped when asked) and its content type; runs on a scrape thread."""
    encoder, ctype = choose_encoder(accept)
    if isinstance(registry, LogscanRegistry):
        func = getattr(encoder, "func", encoder)
        kw: dict[str, Any] = getattr(encoder, "keywords", {})
        if kw.get("escaping", "underscores") in _FAST_ESCAPING:
            if func is text_exposition.generate_latest:
                return registry.exposition(openmetrics=False, gzipped=gz), ctype
            if func is om_exposition.generate_latest and kw.get("version", "1.0.0") == "1.0.0":
                return registry.exposition(openmetrics=True, gzipped=gz), ctype
    # Another format or escaping asked for (or another registry): prometheus_client's encoder.
    output = encoder(registry)
    return (gzip.compress(output, compresslevel=1) if gz else output), ctype


class MetricsServer:
    """Serves the registry over HTTP(S); `start()` binds (errors surface there), `stop()` ends it.

    `max_connections` caps open connections (beyond it the oldest one that has not sent a
    request is closed); `timeout_s` is how long an idle keep-alive connection is kept;
    `head_timeout_s` is the time a connection has to deliver a complete request head (TLS
    handshake included); `max_head_bytes` bounds a request head (431 beyond).
    """

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        ready: Ready,
        web_config: WebConfig | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        diagnosis: Callable[[], bytes] | None = None,
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self.diagnosis = diagnosis  # /diagnosis JSON and the landing page's part, when given
        self._listen = listen
        self.registry = registry
        self.ready = ready
        self._web = web_config or WebConfig()
        self.max_connections = max_connections
        self.idle_timeout_s = timeout_s
        self.head_timeout_s = head_timeout_s
        self.max_head_bytes = max_head_bytes
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: _Core | None = None

    def web_config(self) -> WebConfig:
        """The web config in force (read per connection and per request)."""
        return self._web

    def _bind(self) -> socket.socket:
        if self._host:
            family, _, _, _, sockaddr = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0]
            host = str(sockaddr[0])
        elif socket.has_ipv6:
            family, host = socket.AF_INET6, "::"  # every address, IPv4 too (dual stack), as Go does
        else:
            family, host = socket.AF_INET, "0.0.0.0"  # noqa: S104 - ":port" asks for every address
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, self._port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        """Bind and serve on a background thread; raises ListenError when the address will not bind."""
        if self._thread is not None:
            return
        try:
            sock = self._bind()
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {self._listen}: {exc.strerror or exc}") from exc
        limit = raise_nofile_limit()
        cap = min(self.max_connections, max(16, limit - _FD_RESERVE))
        if cap < self.max_connections:
            _log.warning(
                "file descriptor limit caps metrics connections",
                limit=limit,
                max_connections=cap,
                hint="raise LimitNOFILE",
            )
        self._sock = sock
        self._address = (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
        loop = asyncio.new_event_loop()
        core = _Core(self, cap)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                core.listener = loop.run_until_complete(
                    loop.create_server(lambda: _Conn(core), sock=sock, backlog=1024)
                )
            except BaseException as exc:  # handed to start()
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._loop, self._core = loop, core
        self._thread = threading.Thread(target=run, name="logscan-http", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            self.stop()
            raise ListenError(errno.EADDRNOTAVAIL, f"cannot serve on {self._listen}: {failure[0]}")
        if self._web.users and self._web.ssl_context is None:
            _log.warning("basic auth without TLS sends passwords in clear text", listen=self._listen)
        _log.info("serving metrics", url=self.url, tls=self._web.ssl_context is not None)

    def stop(self) -> None:
        """Stop accepting, cut every connection and join the serving thread; idempotent."""
        loop, thread, core, sock = self._loop, self._thread, self._core, self._sock
        self._loop = self._thread = self._core = self._sock = None
        self._address = None
        if loop is not None and core is not None and thread is not None and thread.is_alive():

            async def shutdown() -> None:
                if core.listener is not None:
                    core.listener.close()
                for conn in list(core.conns):
                    conn.abort()
                await asyncio.sleep(0)
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if sock is not None:
            sock.close()
        if loop is not None and not loop.is_running():
            loop.close()
        if core is not None:
            core.scrapes.shutdown(wait=False, cancel_futures=True)
            core.bcrypt.shutdown(wait=False, cancel_futures=True)

    def set_web_config(self, web_config: WebConfig | None) -> None:
        """Swap TLS material, users and headers (SIGHUP, certificate renewal).

        Users and headers apply to the next request; TLS settings to the next connection.
        """
        self._web = web_config or WebConfig()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when `listen` asked for port 0."""
        if self._address is None:
            raise RuntimeError("MetricsServer is not started")
        return self._address

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. https://[::1]:9551."""
        host, port = self.address
        scheme = "https" if self._web.ssl_context is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
