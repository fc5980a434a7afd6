"""HTTP face of the daemon: /metrics, /, /healthz, /ready, with optional TLS and basic auth.

TLS and authentication follow the Prometheus exporter-toolkit web-config file, so the
same file (and the same operator habits) work for logscan and node_exporter alike.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import gzip
import hashlib
import html
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import bcrypt
import structlog
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from logscan import __version__

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
<ul><li><a href="metrics">metrics</a></li><li><a href="healthz">healthz</a></li>
<li><a href="ready">ready</a></li></ul></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses connections, TLS handshakes are dear
    server: _Server
    server_version = f"logscan/{__version__}"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("http", client=self.client_address[0], msg=format % args)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def _send(
        self, status: int, ctype: str, payload: bytes, body: bool, extra: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in {**self.server.web.headers, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _text(self, status: int, text: str, body: bool, extra: Mapping[str, str] | None = None) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode(), body, extra)

    def _dispatch(self, body: bool) -> None:
        web = self.server.web
        if web.users:
            creds = _parse_basic(self.headers.get("Authorization", ""))
            if creds is None or not self.server.auth.check(web.users, *creds):
                self._text(
                    HTTPStatus.UNAUTHORIZED,
                    "Unauthorized\n",
                    body,
                    {"WWW-Authenticate": 'Basic realm="logscan", charset="UTF-8"'},
                )
                return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics(body)
        elif path == "/":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.landing, body)
        elif path == "/healthz":
            self._text(HTTPStatus.OK, "OK\n", body)
        elif path == "/ready":
            try:
                ok, reason = self.server.ready()
            except Exception as exc:
                _log.exception("ready check failed")
                ok, reason = False, f"ready check failed: {type(exc).__name__}"
            self._text(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, (reason or "OK") + "\n", body)
        else:
            self._text(HTTPStatus.NOT_FOUND, "Not Found\n", body)

    def _metrics(self, body: bool) -> None:
        encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
        try:
            output = encoder(self.server.registry)
        except Exception:
            # A 5xx makes Prometheus record up=0: the failure is visible, not a silent gap.
            _log.exception("scrape failed")
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "scrape failed; see the logscan log\n", body)
            return
        extra = {"Vary": "Accept, Accept-Encoding"}
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            output = gzip.compress(output, compresslevel=6)
            extra["Content-Encoding"] = "gzip"
        self._send(HTTPStatus.OK, ctype, output, body, extra)


class _Server(ThreadingHTTPServer):
    """One thread per connection, TLS handshake on that thread, at most `max_connections` at once."""

    daemon_threads = True  # stop() must not wait for a scraper that hangs
    block_on_close = False
    request_queue_size = 64

    def __init__(
        self,
        host: str,
        port: int,
        family: socket.AddressFamily,
        registry: CollectorRegistry,
        ready: Ready,
        web: WebConfig,
        max_connections: int,
        timeout_s: float,
    ) -> None:
        self.address_family = family
        self.registry = registry
        self.ready = ready
        self.web = web
        self.auth = _BasicAuth()
        self.timeout_s = timeout_s
        self.landing = _LANDING.format(version=html.escape(__version__)).encode()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # "[::]" and ":port" listen on IPv4 too, as Go's net.Listen does.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would resolve our own FQDN: a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: refuse fast rather than queue unboundedly
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        conn = request
        self._track(conn, None)
        try:
            conn.settimeout(self.timeout_s)
            ctx = self.web.ssl_context
            if ctx is not None:
                conn = ctx.wrap_socket(request, server_side=True)
                self._track(conn, request)
                if not self._san_allowed(conn):
                    return
            self.finish_request(conn, client_address)
        except (ssl.SSLError, OSError) as exc:
            _log.debug("connection dropped", client=client_address[0], error=str(exc))
        except Exception:
            _log.exception("request failed", client=client_address[0])
        finally:
            self._track(None, conn)
            self.shutdown_request(conn)
            self._slots.release()

    def _track(self, add: socket.socket | None, remove: socket.socket | None) -> None:
        with self._conns_lock:
            if remove is not None:
                self._conns.discard(remove)
            if add is not None:
                self._conns.add(add)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections: after stop() nothing may be served any more."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _san_allowed(self, conn: ssl.SSLSocket) -> bool:
        tls = self.web.tls
        if tls is None or not tls.client_allowed_sans:
            return True
        cert = conn.getpeercert() or {}
        pairs: Any = cert.get("subjectAltName", ())  # (("DNS", "x"), ("IP Address", "1.2.3.4"), ...)
        sans = {str(pair[1]) for pair in pairs}
        if sans & set(tls.client_allowed_sans):
            return True
        _log.info("client certificate SAN not allowed", sans=sorted(sans))
        return False


class MetricsServer:
    """Serves the registry over HTTP(S); `start()` binds (errors surface there), `stop()` ends it."""

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        ready: Ready,
        web_config: WebConfig | None = None,
        *,
        max_connections: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self._listen = listen
        self._registry = registry
        self._ready = ready
        self._web = web_config or WebConfig()
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a background thread; raises ListenError when the address will not bind."""
        if self._server is not None:
            return
        try:
            if self._host:
                family, _, _, _, sockaddr = socket.getaddrinfo(
                    self._host, self._port, type=socket.SOCK_STREAM
                )[0]
                host = str(sockaddr[0])
            elif socket.has_ipv6:
                family, host = socket.AF_INET6, "::"  # every address, IPv4 too (dual stack), as Go does
            else:
                family, host = socket.AF_INET, "0.0.0.0"  # noqa: S104 - ":port" asks for every address
            server = _Server(
                host,
                self._port,
                family,
                self._registry,
                self._ready,
                self._web,
                self._max_connections,
                self._timeout_s,
            )
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {self._listen}: {exc.strerror or exc}") from exc
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="logscan-http", daemon=True)
        self._thread.start()
        if self._web.users and self._web.ssl_context is None:
            _log.warning("basic auth without TLS sends passwords in clear text", listen=self._listen)
        _log.info("serving metrics", url=self.url, tls=self._web.ssl_context is not None)

    def stop(self) -> None:
        """Stop accepting, close the socket and join the serving thread; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def set_web_config(self, web_config: WebConfig | None) -> None:
        """Swap TLS material, users and headers (SIGHUP, certificate renewal); new connections see it."""
        self._web = web_config or WebConfig()
        if self._server is not None:
            self._server.web = self._web

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when `listen` asked for port 0."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        return str(self._server.server_address[0]), int(self._server.server_address[1])

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
