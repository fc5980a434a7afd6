"""MetricsServer over real sockets: endpoints, negotiation, TLS, mTLS, basic auth, web-config errors."""

from __future__ import annotations

import contextlib
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import urllib3
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from logscan.core.aggregate import Aggregate
from logscan.events import Event
from logscan.outputs import http as web_module
from logscan.outputs.http import (
    ListenError,
    MetricsServer,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_listen,
)
from logscan.outputs.metrics import Exposition, LogStatus, make_registry

T0 = 1_790_000_000.0
LOGS = (LogStatus("mx1", "postfix", True),)


def registry(agg: Aggregate | None = None) -> CollectorRegistry:
    agg = agg or Aggregate()
    lock = threading.Lock()

    def source() -> Exposition:
        with lock:
            snap = agg.snapshot(T0)
        return Exposition(snap, logs=LOGS)

    return make_registry(source, process_metrics=False)


@contextmanager
def serving(
    listen: str = "127.0.0.1:0",
    web: WebConfig | None = None,
    ready: Callable[[], tuple[bool, str]] = lambda: (True, ""),
    agg: Aggregate | None = None,
    **kw: Any,
) -> Iterator[MetricsServer]:
    server = MetricsServer(listen, registry(agg), ready, web, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def http(retries: bool = False, **kw: object) -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=retries, timeout=urllib3.Timeout(10), **kw)  # type: ignore[arg-type]


def get(url: str, pool: urllib3.PoolManager | None = None, **kw: object) -> urllib3.BaseHTTPResponse:
    return (pool or http()).request("GET", url, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- listen address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9551", ("127.0.0.1", 9551)),
        ("[::1]:9551", ("::1", 9551)),
        (":9551", ("", 9551)),
        ("localhost:0", ("localhost", 0)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_parse_listen_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["9551", "127.0.0.1", "::1:9551", "[::1]", "[nope]:1", "host:99999", "host:x"]
)
def test_parse_listen_rejects_with_a_message_naming_the_input(text: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen(text)


# ---------------------------------------------------------------- plain HTTP


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_endpoints_on_ipv4_and_ipv6_loopback(listen: str) -> None:
    agg = Aggregate()
    agg.add(Event("postfix", "mx1", T0, "outbound", code="551", enhanced="5.1.1"))
    with serving(listen, agg=agg) as server:
        host, port = server.address
        assert port > 0
        assert host == listen.rsplit(":", 1)[0].strip("[]")
        landing = get(server.url + "/")
        assert landing.status == 200
        assert landing.headers["Content-Type"].startswith("text/html")
        assert b'href="metrics"' in landing.data
        health = get(server.url + "/healthz")
        assert (health.status, health.data) == (200, b"OK\n")
        metrics = get(server.url + "/metrics")
        assert metrics.status == 200
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        fams = {f.name: f for f in text_string_to_metric_families(metrics.data.decode())}
        replies = {tuple(sorted(s.labels.items())): s.value for s in fams["logscan_smtp_replies"].samples}
        key = (
            ("code", "551"),
            ("direction", "outbound"),
            ("enhanced", "5.1.1"),
            ("log", "mx1"),
            ("mta", "postfix"),
        )
        assert replies[key] == 1
        assert get(server.url + "/nope").status == 404


def test_openmetrics_is_negotiated_by_accept_header() -> None:
    with serving() as server:
        om = get(server.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.data.endswith(b"# EOF\n")
        # Prometheus 2.x sends this list; it prefers OpenMetrics
        prom = get(
            server.url + "/metrics",
            headers={
                "Accept": "application/openmetrics-text;version=1.0.0,"
                "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            },
        )
        assert prom.headers["Content-Type"].startswith("application/openmetrics-text")
        text = get(server.url + "/metrics", headers={"Accept": "text/plain"})
        assert text.headers["Content-Type"].startswith("text/plain")
        assert b"# EOF" not in text.data


def test_gzip_when_asked_and_only_then() -> None:
    with serving() as server:
        raw = get(server.url + "/metrics", headers={"Accept-Encoding": "gzip"}, decode_content=False)
        assert raw.headers["Content-Encoding"] == "gzip"
        assert int(raw.headers["Content-Length"]) == len(raw.data)
        assert b"logscan_smtp_replies_total" in gzip.decompress(raw.data)
        plain = get(server.url + "/metrics", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers
        assert b"logscan_smtp_replies_total" in plain.data


def test_head_sends_headers_without_body() -> None:
    with serving() as server:
        resp = http().request("HEAD", server.url + "/metrics")
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) > 1000
        assert resp.data == b""


def test_ready_is_503_with_reason_until_every_log_is_open() -> None:
    state = {"ok": False}

    def ready() -> tuple[bool, str]:
        return (True, "") if state["ok"] else (False, "log mx1 not opened yet: /var/log/mail.log missing")

    with serving(ready=ready) as server:
        not_yet = get(server.url + "/ready")
        assert not_yet.status == 503
        assert b"mx1 not opened" in not_yet.data
        assert get(server.url + "/healthz").status == 200  # alive while not ready
        state["ok"] = True
        assert get(server.url + "/ready").status == 200


def test_a_failing_source_gives_500_not_a_partial_page() -> None:
    def broken() -> Exposition:
        raise RuntimeError("boom")

    server = MetricsServer("127.0.0.1:0", make_registry(broken, process_metrics=False), lambda: (True, ""))
    with server:
        resp = get(server.url + "/metrics")
        assert resp.status == 500
        assert b"logscan_" not in resp.data
        assert get(server.url + "/healthz").status == 200


def test_address_in_use_raises_listen_error_from_start() -> None:
    with serving() as first:
        host, port = first.address
        second = MetricsServer(f"{host}:{port}", registry(), lambda: (True, ""))
        with pytest.raises(ListenError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*in use"):
            second.start()
        second.stop()  # harmless when never started
        assert get(first.url + "/healthz").status == 200


def test_stop_closes_the_port_and_is_idempotent() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), lambda: (True, ""))
    server.start()
    server.start()  # no second bind
    host, port = server.address
    assert get(server.url + "/healthz").status == 200
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2).close()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.address


def test_stop_cuts_open_keep_alive_connections() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), lambda: (True, ""))
    server.start()
    conn = socket.create_connection(server.address, timeout=5)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b"OK\n"):  # header and body may come in separate segments
        chunk = conn.recv(1000)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")
    server.stop()
    try:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1000) == b""  # closed, not served
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        conn.close()


def test_a_stalled_client_does_not_block_other_scrapes() -> None:
    with serving(timeout_s=30) as server:
        host, port = server.address
        stalled = socket.create_connection((host, port))
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never finishes the request
        try:
            t = time.monotonic()
            assert get(server.url + "/metrics").status == 200
            assert time.monotonic() - t < 5
        finally:
            stalled.close()


def test_concurrent_scrapes_while_events_arrive_see_monotonic_counters() -> None:
    agg = Aggregate()
    lock = threading.Lock()

    def source() -> Exposition:
        with lock:
            snap = agg.snapshot(T0)
        return Exposition(snap, logs=LOGS)

    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with lock:
                for _ in range(50):
                    agg.add(Event("postfix", "mx1", T0, "outbound", code="551"))

    def value(body: bytes) -> float:
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                if (
                    s.name == "logscan_smtp_replies_total"
                    and s.labels["code"] == "551"
                    and s.labels["direction"] == "outbound"
                ):
                    return s.value
        raise AssertionError("551 series missing")

    errors: list[BaseException] = []

    def scraper(url: str) -> None:
        try:
            pool, last = http(), -1.0
            for _ in range(15):
                resp = get(url, pool)
                assert resp.status == 200
                v = value(resp.data)
                assert v >= last
                last = v
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    server = MetricsServer("127.0.0.1:0", make_registry(source, process_metrics=False), lambda: (True, ""))
    with server:
        w = threading.Thread(target=writer)
        w.start()
        scrapers = [threading.Thread(target=scraper, args=(server.url + "/metrics",)) for _ in range(6)]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join(60)
        stop.set()
        w.join()
    assert not errors, errors[0]
    assert agg.replies[("postfix", "mx1", "outbound", "551", "")] > 0


def test_beyond_the_cap_the_oldest_silent_connection_makes_room_for_a_scrape() -> None:
    with serving(max_connections=2) as server:
        host, port = server.address
        held = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
        time.sleep(0.3)  # let the server accept both
        extra = socket.create_connection((host, port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := extra.recv(1000):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(b"OK\n")
        extra.close()
        with contextlib.suppress(ConnectionResetError):  # the oldest silent one was closed
            assert held[0].recv(100) == b""
        held[1].setblocking(False)
        with pytest.raises(BlockingIOError):  # the younger one is still open
            held[1].recv(100)
        for s in held:
            s.close()
        assert get(server.url + "/healthz").status == 200


def read_until_closed(conn: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    t = time.monotonic()
    conn.settimeout(limit)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(4096):
            data += chunk
    return data, time.monotonic() - t


def test_default_limits() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), lambda: (True, ""))
    assert server.head_timeout_s == 10.0
    assert server.max_head_bytes == 64 * 1024
    assert server.idle_timeout_s == 60.0


def test_a_client_that_keeps_dripping_header_bytes_is_cut_at_the_head_deadline() -> None:
    with serving(head_timeout_s=0.5) as server:
        drip = socket.create_connection(server.address, timeout=5)
        drip.sendall(b"GET /metrics HTTP/1.1\r\n")
        t = time.monotonic()
        cut = False
        while time.monotonic() - t < 5:
            try:
                drip.sendall(b"X")
            except OSError:
                cut = True
                break
            time.sleep(0.05)
        assert cut, "a client that never finishes its head must be closed"
        assert time.monotonic() - t >= 0.4  # not before the deadline
        drip.close()
        assert get(server.url + "/healthz").status == 200


def test_keep_alive_outlives_the_head_deadline_until_the_idle_timeout() -> None:
    with serving(head_timeout_s=0.3, timeout_s=1.5) as server:
        conn = socket.create_connection(server.address, timeout=5)
        for _ in range(2):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"OK\n"):
                chunk = conn.recv(1000)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200")
            time.sleep(0.6)  # idle past the head deadline: a kept-alive connection is not cut
        rest, waited = read_until_closed(conn)
        assert rest == b""
        assert waited < 5  # closed by the idle timeout
        conn.close()


def test_heads_are_bounded_431_and_garbage_is_400() -> None:
    with serving(max_head_bytes=4096) as server:
        many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
        for payload in (many + b"\r\n", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"):
            conn = socket.create_connection(server.address, timeout=5)
            with contextlib.suppress(OSError):
                conn.sendall(payload)
            answer, _ = read_until_closed(conn)
            conn.close()
            assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
            assert b"logscan_" not in answer
        conn = socket.create_connection(server.address, timeout=5)
        conn.sendall(b"HELLO THERE\r\n\r\n")
        answer, _ = read_until_closed(conn)
        conn.close()
        assert answer.split(b" ")[1] == b"400"
        assert http().request("POST", server.url + "/metrics", body=b"x").status == 405
        assert get(server.url + "/metrics").status == 200


# ---------------------------------------------------------------- TLS and authentication


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_leaf(d: Path, name: str, ca: str, san: str, usage: str) -> None:
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
    )
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-days", "2",
            "-CAcreateserial", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_leaf(d, "server", "ca", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth")
    make_leaf(d, "client", "ca", "DNS:prometheus.example", "clientAuth")
    make_leaf(d, "rogue", "rogue-ca", "DNS:prometheus.example", "clientAuth")
    return Pki(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
               d / "rogue.crt", d / "rogue.key")  # fmt: skip


def web_config(d: Path, text: str, name: str = "web.yml") -> WebConfig:
    path = d / name
    path.write_text(text)
    return load_web_config(path)


def tls_pool(pki: Pki, cert: Path | None = None, key: Path | None = None) -> urllib3.PoolManager:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return http(ssl_context=ctx)


def test_tls_handshake_with_a_real_certificate(pki: Pki) -> None:
    # relative paths resolve against the web-config file's folder, as in exporter-toolkit
    cfg = web_config(pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    for listen in ("127.0.0.1:0", "[::1]:0"):
        with serving(listen, web=cfg) as server:
            assert server.url.startswith("https://")
            resp = get(server.url + "/metrics", tls_pool(pki))
            assert resp.status == 200
            assert b"logscan_build_info" in resp.data
            with pytest.raises(urllib3.exceptions.HTTPError):
                get(server.url.replace("https://", "http://") + "/metrics")  # plain HTTP to a TLS port
            with pytest.raises(urllib3.exceptions.SSLError):
                get(server.url + "/metrics", http())  # the system CAs do not know our test CA


def test_tls_min_version_is_enforced(pki: Pki) -> None:
    cfg = web_config(
        pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
    )
    with serving(web=cfg) as server:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(urllib3.exceptions.SSLError):
            get(server.url + "/healthz", http(ssl_context=ctx))
        assert get(server.url + "/healthz", tls_pool(pki)).status == 200


def test_a_tcp_client_that_never_handshakes_does_not_block_tls_clients(pki: Pki) -> None:
    cfg = web_config(pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    with serving(web=cfg) as server:
        silent = socket.create_connection(server.address)
        try:
            t = time.monotonic()
            assert get(server.url + "/healthz", tls_pool(pki)).status == 200
            assert time.monotonic() - t < 5
        finally:
            silent.close()


def test_a_tcp_client_that_never_handshakes_is_closed_at_the_head_deadline(pki: Pki) -> None:
    cfg = web_config(pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    with serving(web=cfg, head_timeout_s=0.5) as server:
        silent = socket.create_connection(server.address)
        data, waited = read_until_closed(silent)
        silent.close()
        assert data == b""
        assert 0.4 <= waited < 5
        assert get(server.url + "/healthz", tls_pool(pki)).status == 200


MTLS = """tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
"""


def test_mtls_rejects_clients_without_a_trusted_certificate(pki: Pki) -> None:
    cfg = web_config(pki.dir, MTLS)
    with serving(web=cfg) as server:
        for pool in (tls_pool(pki), tls_pool(pki, pki.rogue_cert, pki.rogue_key)):
            with pytest.raises(urllib3.exceptions.HTTPError):
                get(server.url + "/healthz", pool)
        ok = get(server.url + "/metrics", tls_pool(pki, pki.client_cert, pki.client_key))
        assert ok.status == 200
        assert b"logscan_smtp_replies_total" in ok.data


def test_mtls_client_allowed_sans(pki: Pki) -> None:
    allowed = web_config(pki.dir, MTLS + "  client_allowed_sans: [prometheus.example]\n", "sans-ok.yml")
    denied = web_config(pki.dir, MTLS + "  client_allowed_sans: [someone-else.example]\n", "sans-no.yml")
    with serving(web=allowed) as server:
        assert get(server.url + "/healthz", tls_pool(pki, pki.client_cert, pki.client_key)).status == 200
    with serving(web=denied) as server, pytest.raises(urllib3.exceptions.HTTPError):
        get(server.url + "/healthz", tls_pool(pki, pki.client_cert, pki.client_key))


def auth_header(user: str, password: str) -> dict[str, str]:
    return urllib3.make_headers(basic_auth=f"{user}:{password}")


def hashed(password: str, prefix: bytes = b"$2b$") -> str:
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
    return (prefix + h[4:]).decode()


def test_basic_auth_guards_every_endpoint(tmp_path: Path) -> None:
    # $2y$ is what htpasswd writes (the toolkit docs' example); it must work as well as $2b$
    cfg = web_config(
        tmp_path, f"basic_auth_users:\n  alice: '{hashed('s3cret', b'$2y$')}'\n  bob: '{hashed('pw')}'\n"
    )
    with serving(web=cfg) as server:
        for path in ("/", "/metrics", "/healthz", "/ready", "/nope"):
            anon = get(server.url + path)
            assert anon.status == 401, path
            assert anon.headers["WWW-Authenticate"].startswith("Basic")
            assert b"logscan" not in anon.data
        assert get(server.url + "/metrics", headers=auth_header("alice", "wrong")).status == 401
        assert get(server.url + "/metrics", headers=auth_header("mallory", "s3cret")).status == 401
        assert get(server.url + "/metrics", headers={"Authorization": "Basic !!notbase64"}).status == 401
        assert get(server.url + "/metrics", headers={"Authorization": "Bearer abc"}).status == 401
        for user, pw in (("alice", "s3cret"), ("bob", "pw")):
            ok = get(server.url + "/metrics", headers=auth_header(user, pw))
            assert ok.status == 200
            assert b"logscan_smtp_replies_total" in ok.data


def test_basic_auth_and_mtls_together(pki: Pki) -> None:
    cfg = web_config(pki.dir, MTLS + f"basic_auth_users:\n  prom: '{hashed('pw')}'\n", "both.yml")
    with serving(web=cfg) as server:
        pool = tls_pool(pki, pki.client_cert, pki.client_key)
        assert get(server.url + "/metrics", pool).status == 401
        assert get(server.url + "/metrics", pool, headers=auth_header("prom", "pw")).status == 200


def test_bcrypt_results_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(password)
        return real(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    auth = web_module._BasicAuth()
    users = {"alice": hashed("pw").encode()}
    assert [auth.check(users, "alice", "pw") for _ in range(5)] == [True] * 5
    assert [auth.check(users, "alice", "bad") for _ in range(5)] == [False] * 5
    assert not auth.check(users, "eve", "pw")  # unknown user: decoy hash, still one bcrypt
    assert len(calls) == 3
    assert not auth.check({"alice": hashed("other").encode()}, "alice", "pw")  # new hash, new check
    assert len(calls) == 4


def test_response_headers_from_web_config(tmp_path: Path) -> None:
    cfg = web_config(
        tmp_path,
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n",
    )
    with serving(web=cfg) as server:
        resp = get(server.url + "/")
        assert resp.headers["X-Frame-Options"] == "deny"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_web_config_can_be_swapped_while_serving(tmp_path: Path) -> None:
    with serving() as server:
        assert get(server.url + "/healthz").status == 200
        server.set_web_config(web_config(tmp_path, f"basic_auth_users:\n  alice: '{hashed('pw')}'\n"))
        assert get(server.url + "/healthz").status == 401
        assert get(server.url + "/healthz", headers=auth_header("alice", "pw")).status == 200
        server.set_web_config(None)
        assert get(server.url + "/healthz").status == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  colour: red\n",
            "unknown key 'tls_server_config.colour'",
        ),
        ("basic_auth_user:\n  a: b\n", "unknown key 'basic_auth_user'"),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "http_server_config.headers.X-Powered-By",
        ),
        ("http_server_config:\n  keepalive: true\n", "unknown key 'http_server_config.keepalive'"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n", "cipher_suites"),
        ("rate_limit:\n  interval: 1s\n  burst: 2\n", "'rate_limit'"),
        ("tls_server_config:\n  cert: PEM\n  key: PEM\n", "inline certificates are not supported"),
        ("tls_server_config:\n  cert_file: server.crt\n", "needs both cert_file and key_file"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "unverified",
        ),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n", "Sometimes"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.crt\n", "NoClientCert"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n", "min_version 'SSL3'"),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "cannot load TLS material",
        ),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice is not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "basic_auth_users must be a mapping"),
        ("tls_server_config: {cert_file: [\n", "not valid YAML"),
        ("- just\n- a list\n", "the file must be a mapping"),
    ],
)
def test_web_config_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web-config.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_web_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"nope\.yml: cannot read"):
        load_web_config(tmp_path / "nope.yml")


def test_the_shipped_example_passes_promtool_check_web_config(pki: Pki, tmp_path: Path) -> None:
    """The same file must work for the exporter-toolkit of Debian 12's Prometheus (promtool 2.42)."""
    example = Path(__file__).parent.parent / "config" / "web-config.example.yml"
    text = example.read_text()
    assert "web_config_file" in text  # the key logscan.toml really has
    for name in ("logscan.crt", "logscan.key", "prometheus-ca.crt"):
        assert f"/etc/logscan/tls/{name}" in text
    real = {"logscan.crt": pki.server_cert, "logscan.key": pki.server_key, "prometheus-ca.crt": pki.ca}
    for name, path in real.items():
        text = text.replace(f"/etc/logscan/tls/{name}", str(path))
    (tmp_path / "web.yml").write_text(text)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: apt-get install prometheus"
    done = subprocess.run(
        [promtool, "check", "web-config", str(tmp_path / "web.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
    assert load_web_config(tmp_path / "web.yml").ssl_context is not None  # and logscan takes it too


def test_the_shipped_example_web_config_is_valid_apart_from_its_placeholders() -> None:
    example = Path(__file__).parent.parent / "config" / "web-config.example.yml"
    with pytest.raises(WebConfigError, match="cannot load TLS material"):
        load_web_config(example)  # the key is parsed; only the example cert paths do not exist
