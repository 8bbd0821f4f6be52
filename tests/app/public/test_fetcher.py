"""The one remote fetcher (public/fetcher.py) against real HTTP servers on loopback addresses: what
it refuses never reaches the server (each counts its connections), what the operator allows is
fetched, and the time and size limits hold. No mock of httpx or httpcore: only the resolver is
replaced, where a test is about what a name resolves to."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.answering.uploaded import uploaded_path
from pandagpt_demo.app.public.fetcher import CheckedBackend, Deadline, Fetched, FetchPolicy, RemoteRefused, TlsFailed, fetch_to, safe_name
from pandagpt_demo.app.server import parse_args
from pandagpt_demo.errors import BadInput, BadSetting, TooLarge
from pandagpt_demo.model.modalities import MediaError, Modality

PNG = bytes(range(256)) * 8  # the "file" the servers serve
LOCAL = FetchPolicy(allow=("127.0.0.1",))  # the operator allows 127.0.0.1 (and only it: 127.0.0.2 stays refused)

Route = Callable[[BaseHTTPRequestHandler], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.paths.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):  # the fetcher hung up (a limit it keeps)
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class Site(ThreadingHTTPServer):
    """An HTTP server on a loopback address that counts the connections it accepts and the paths asked for."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self.routes: dict[str, Route] = {}
        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        self.host = host

    def verify_request(self, request: object, client_address: object) -> bool:
        self.connections += 1
        return True

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@pytest.fixture
def site() -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def start(host: str = "127.0.0.1", port: int = 0) -> Site:
        server = Site(host, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def body(data: bytes, content_type: str = "image/png", headers: dict[str, str] | None = None) -> Route:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)

    return send


def redirect(location: str, close: bool = False) -> Route:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()

    return send


def chunked(pieces: int, size: int) -> Route:
    """A body with no Content-Length: `pieces` chunks of `size` bytes."""

    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(pieces):
            h.wfile.write(b"%x\r\n%s\r\n" % (size, b"x" * size))
        h.wfile.write(b"0\r\n\r\n")

    return send


def trickle(seconds: float, every: float = 0.3) -> Route:
    """A byte every `every` seconds for `seconds` (no read waits long; the whole takes long)."""

    def send(h: BaseHTTPRequestHandler) -> None:
        count = int(seconds / every)
        h.send_response(200)
        h.send_header("Content-Length", str(count))
        h.end_headers()
        for _ in range(count):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(every)

    return send


def claims(length: int) -> Route:
    """Headers declaring a body of `length` bytes, and a few bytes of it."""

    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(b"x" * 10)

    return send


def refused(url: str, target: Path, policy: FetchPolicy | None = None) -> RemoteRefused:
    with pytest.raises(RemoteRefused) as caught:
        fetch_to(url, target, policy or FetchPolicy())
    assert not target.exists(), "nothing is left where the file was to be"
    assert isinstance(caught.value, BadInput) and caught.value.url == url and str(caught.value).startswith(f"Could not fetch {url}: ")
    return caught.value


def test_a_loopback_url_is_refused_before_connecting(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/x.png"] = body(PNG)
    error = refused(server.url("/x.png"), tmp_path / "x.png")
    assert "127.0.0.1 is a loopback address, which this server does not fetch from" in str(error)
    assert "--remote-media-allow" in str(error), "the message says how the operator allows it"
    assert server.connections == 0 and server.paths == []


def test_localhost_is_refused_by_what_it_resolves_to(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/x.png"] = body(PNG)
    error = refused(server.url("/x.png", host="localhost"), tmp_path / "x.png")
    assert "localhost resolves to a loopback address" in error.reason
    assert server.connections == 0


def test_an_ipv4_mapped_ipv6_literal_is_refused(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/x.png"] = body(PNG)
    error = refused(server.url("/x.png", host="[::ffff:127.0.0.1]"), tmp_path / "x.png")
    assert "::ffff:127.0.0.1 is a loopback address" in error.reason
    assert server.connections == 0


def test_the_metadata_address_is_refused_without_a_connection_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    class Spy(socket.socket):
        def connect(self, address: object) -> None:
            attempts.append(address)
            super().connect(address)

    monkeypatch.setattr(socket, "socket", Spy)
    started = time.monotonic()
    for policy in (FetchPolicy(), FetchPolicy(allow=("169.254.0.0/16",))):  # a network that holds it does not allow it
        error = refused("http://169.254.169.254/latest/meta-data/", tmp_path / "m", policy)
        assert "169.254.169.254 is a cloud metadata address" in error.reason
    assert attempts == [] and time.monotonic() - started < 2
    assert FetchPolicy(allow=("169.254.169.254",)).refusal(ipaddress.ip_address("169.254.169.254")) is None, "named alone, it is allowed"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "reserved or unspecified"),
        ("::", "reserved or unspecified"),
        ("240.0.0.1", "reserved or unspecified"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_which_addresses_are_refused(address: str, kind: str | None) -> None:
    assert FetchPolicy().refusal(ipaddress.ip_address(address)) == kind
    if kind not in (None, "cloud metadata"):
        assert FetchPolicy(allow=(address,)).refusal(ipaddress.ip_address(address)) is None, "the operator's allow-list lets it through"


def test_the_allow_listed_server_is_fetched_following_its_redirects(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/file.png"] = body(PNG)
    server.routes["/go"] = redirect("/again")
    server.routes["/again"] = redirect(server.url("/file.png"))
    target = tmp_path / "new" / "fetched"
    result = fetch_to(server.url("/go"), target, FetchPolicy(allow=("127.0.0.0/30",), max_redirects=2))
    assert result == Fetched(name="file.png", content_type="image/png", size=len(PNG)), "the name is the final URL's"
    assert target.read_bytes() == PNG
    assert server.paths == ["/go", "/again", "/file.png"]


def test_a_redirect_to_a_server_not_allowed_is_refused_unreached(site: Callable[..., Site], tmp_path: Path) -> None:
    allowed, other = site("127.0.0.1"), site("127.0.0.2")
    other.routes["/secret.png"] = body(PNG)
    allowed.routes["/go"] = redirect(other.url("/secret.png"))
    error = refused(allowed.url("/go"), tmp_path / "x.png", LOCAL)
    assert error.reason.startswith(f"it redirects to {other.url('/secret.png')}, and 127.0.0.2 is a loopback address")
    assert allowed.paths == ["/go"]
    assert other.connections == 0 and other.paths == []


def test_too_many_redirects(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    for n in range(10):
        server.routes[f"/r{n}"] = redirect(f"/r{n + 1}")
    error = refused(server.url("/r0"), tmp_path / "x", FetchPolicy(allow=("127.0.0.1",), max_redirects=3))
    assert error.reason == "it redirects more than 3 times"
    assert server.paths == ["/r0", "/r1", "/r2", "/r3"], "three redirects followed, the fourth not"


def test_a_redirect_to_another_scheme_and_other_schemes_are_refused(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/go"] = redirect("file:///etc/passwd")
    error = refused(server.url("/go"), tmp_path / "x", LOCAL)
    assert error.reason.startswith("it redirects to file:") and error.reason.endswith(
        "/etc/passwd, but only http and https URLs are fetched, not file"
    )
    for url in ("file:///etc/passwd", "ftp://example.com/x.png", "gopher://127.0.0.1:70/"):
        assert "only http and https URLs are fetched" in refused(url, tmp_path / "x").reason


def test_an_error_status_is_named(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    assert refused(server.url("/missing.png"), tmp_path / "x", LOCAL).reason == "the server answered HTTP 404"


def test_a_closed_port_says_only_that_it_could_not_connect(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = refused(f"http://127.0.0.1:{port}/x.png", tmp_path / "x", LOCAL)
    assert error.reason == "could not connect to 127.0.0.1"
    assert "refused" not in str(error).lower() and "errno" not in str(error).lower(), "nothing of the OS's text helps a port scanner"


def test_the_size_limit_by_content_length_and_by_bytes_received(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/declared"] = claims(10_000)
    server.routes["/chunked"] = chunked(pieces=20, size=64)
    server.routes["/fits"] = chunked(pieces=4, size=64)
    policy = FetchPolicy(allow=("127.0.0.1",), max_bytes=300)
    for path in ("/declared", "/chunked"):
        target = tmp_path / path.strip("/")
        with pytest.raises(TooLarge, match=r"the file is larger than the .* MB the server accepts"):
            fetch_to(server.url(path), target, policy)
        assert not target.exists(), f"{path}: the partial file is removed"
    assert fetch_to(server.url("/fits"), tmp_path / "fits", policy).size == 256
    assert (tmp_path / "fits").read_bytes() == b"x" * 256


def test_a_gzip_body_is_decoded_within_the_limit(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/small.csv"] = body(gzip.compress(PNG), "text/csv", {"Content-Encoding": "gzip"})
    server.routes["/bomb.csv"] = body(gzip.compress(bytes(50_000_000)), "text/csv", {"Content-Encoding": "gzip"})
    assert fetch_to(server.url("/small.csv"), tmp_path / "small", LOCAL).size == len(PNG)
    assert (tmp_path / "small").read_bytes() == PNG
    with pytest.raises(TooLarge):
        fetch_to(server.url("/bomb.csv"), tmp_path / "bomb", FetchPolicy(allow=("127.0.0.1",), max_bytes=1_000_000))
    assert not (tmp_path / "bomb").exists()


def test_the_deadline_is_over_the_whole_fetch(site: Callable[..., Site], tmp_path: Path) -> None:
    server = site()
    server.routes["/slow"] = trickle(seconds=6)  # every read gets a byte within 0.3 s
    started = time.monotonic()
    error = refused(server.url("/slow"), tmp_path / "slow", FetchPolicy(allow=("127.0.0.1",), timeout=1.0))
    assert error.reason == "it took longer than the 1 s a fetch may take"
    assert time.monotonic() - started < 2.5


def test_dns_rebinding_is_judged_by_the_address_connected(site: Callable[..., Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name public for an earlier check and loopback when connected is refused, unreached."""
    server = site()
    server.routes["/x.png"] = body(PNG)
    real = socket.getaddrinfo
    answers = iter(["93.184.215.14", "127.0.0.1"])
    asked: list[str] = []

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return real(next(answers), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    earlier = socket.getaddrinfo("rebind.test", server.port)  # what a check ahead of the fetch would see
    assert FetchPolicy().refusal(ipaddress.ip_address(earlier[0][4][0])) is None, "public at first"
    error = refused(server.url("/x.png", host="rebind.test"), tmp_path / "x.png")
    assert error.reason.startswith("rebind.test resolves to a loopback address")
    assert asked == ["rebind.test", "rebind.test"], "the fetcher resolved it itself, when connecting"
    assert server.connections == 0


def test_each_connection_is_checked_again(site: Callable[..., Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed name that answers, closes the connection and redirects to itself, then resolves to
    an address not allowed: the second connection is refused and that server gets nothing."""
    first = site("127.0.0.1")
    second = site("127.0.0.2", first.port)  # the same port: the same URL's host and port reach it
    first.routes["/go"] = redirect("/x.png", close=True)
    first.routes["/x.png"] = second.routes["/x.png"] = body(PNG)
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1", "127.0.0.2"])

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list:
        return real(next(answers) if host == "rebind.test" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    error = refused(first.url("/go", host="rebind.test"), tmp_path / "x.png", LOCAL)
    assert "rebind.test resolves to a loopback address" in error.reason
    assert first.paths == ["/go"] and second.connections == 0


def test_safe_names() -> None:
    def name(url: str) -> str:
        return safe_name(httpx.URL(url))

    assert name("http://h/a/photo%20one.png?x=/y.exe") == "photo one.png"
    assert name("http://h/a%2F..%2F..%2Fetc%2Fpasswd") == "passwd"
    assert name("http://h/a%5C..%5Cboot.ini") == "boot.ini"
    assert name("http://h/dir/") == name("http://h") == name("http://h/..") == name("http://h/%2E%2E") == "download"
    assert name("http://h/bad%00%0Aname.png") == "bad__name.png"
    long = name("http://h/" + "a" * 500 + ".png")
    assert long.endswith(".png") and len(long.encode()) <= 200


def test_the_allow_list_is_checked_and_the_flag_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BadSetting, match=r"--remote-media-allow 'intranet' is not an IP address or CIDR network"):
        FetchPolicy(allow=("intranet",))
    args = parse_args(["--remote-media-allow", "127.0.0.1", "--remote-media-allow", "10.0.0.0/8"])
    assert args.remote_media_allow == ("127.0.0.1", "10.0.0.0/8")
    assert parse_args([]).remote_media_allow == ()
    with pytest.raises(SystemExit):
        parse_args(["--remote-media-allow", "10.0.0.300"])
    assert "--remote-media-allow '10.0.0.300' is not an IP address or CIDR network" in capsys.readouterr().err


def test_the_mcp_path_fetches_with_the_same_fetcher(site: Callable[..., Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`/chat`'s and the MCP tool's URLs: loopback refused unreached, nothing left in the upload
    folder; allowed by the policy passed, the file lands in the upload folder."""
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    server = site()
    server.routes["/x.png"] = body(PNG)
    url = server.url("/x.png")
    with pytest.raises(MediaError, match=r"'image URL': http://127\.0\.0\.1:\d+/x\.png could not be read: 127\.0\.0\.1 is a loopback address"):
        uploaded_path(Modality.IMAGE, url, AnswerSettings().remote)
    assert server.connections == 0
    assert not uploads.exists() or not any(uploads.rglob("*")), "no folder or partial file is left behind"

    path = Path(uploaded_path(Modality.IMAGE, url, LOCAL))
    assert path.name == "x.png" and path.read_bytes() == PNG and path.resolve().is_relative_to(uploads.resolve())

    with pytest.raises(TooLarge):
        uploaded_path(Modality.IMAGE, url, FetchPolicy(allow=("127.0.0.1",), max_bytes=100))
    assert server.paths == ["/x.png", "/x.png"], "the policy allowed it, and its size limit held"


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name `name` only (no IP address in it), and its key."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_is_checked_against_the_host_name_not_the_connected_address(
    site: Callable[..., Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend connects to the checked IP literal, yet TLS sends the URL's name (SNI) and checks
    the certificate for it: a certificate naming only media.test verifies for https://media.test
    (resolved to 127.0.0.1) and not for https://127.0.0.1; the default trust (no such CA) refuses it."""
    cert, key = certificate(tmp_path, "media.test")
    server = site()
    server.routes["/x.png"] = body(PNG)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1" if host == "media.test" else host, *a, **k))

    trusting = ssl.create_default_context(cafile=str(cert))
    with httpcore.ConnectionPool(ssl_context=trusting, network_backend=CheckedBackend(LOCAL, Deadline(5))) as pool:
        response = pool.request("GET", f"https://media.test:{server.port}/x.png")
        assert response.status == 200 and response.content == PNG
        assert names == ["media.test"], "SNI carried the name"
        with pytest.raises(TlsFailed, match="SSLCertVerificationError"):  # the certificate is checked for what the URL names
            pool.request("GET", f"https://127.0.0.1:{server.port}/x.png")

    error = refused(f"https://media.test:{server.port}/x.png", tmp_path / "x.png", LOCAL)
    assert error.reason == "could not make a verified TLS connection to media.test"
