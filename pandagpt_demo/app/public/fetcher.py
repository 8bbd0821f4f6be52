"""The one fetcher of remote media for every entry point (`/v1`'s image URLs, `/chat`'s and the MCP
tool's URLs): public addresses only, within a time and a size limit, streamed to disk.

A public server fetching any URL it is given can be made to read what only it can reach: its own
ports, the private network behind it, a cloud's metadata service. So every connection this fetcher
makes, the first and each redirect's, goes through `CheckedBackend`: it resolves the host itself,
refuses the connection if any address the name resolves to is not public (loopback, private,
link-local, multicast, reserved or unspecified, shared, a cloud's metadata address, or an IPv6 form
of one of those), and connects to the very address it checked; after connecting it checks the
peer's address once more. A name that resolved to a public address for some earlier check and to a
private one now (DNS rebinding) is judged by what it resolves to now, as it is connected. TLS runs
above that with the URL's host name, so the certificate is checked for the name, not the address.

The operator may allow addresses that are not public (`--remote-media-allow 10.0.0.0/8`, repeatable);
a cloud metadata address is allowed only by naming it alone (169.254.169.254, not 169.254.0.0/16).

No proxy from the environment applies (this talks to httpcore directly, which reads no environment),
redirects are followed here (each a new request through the same checked connections; a redirect's
body is never read), and the whole fetch, name resolution included, has one deadline (not one per read).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpcore
import httpx

from pandagpt_demo.errors import BadInput, BadSetting, TooLarge

log = logging.getLogger(__name__)

ALLOW_FLAG = "--remote-media-allow"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services (AWS, GCP and Azure on IPv4; AWS on IPv6; Alibaba), refused by name.
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598): inside a provider, not public
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))  # IPv4 addresses embedded in the low 32 bits
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DECODED_STEP = 1 << 20  # at most this many bytes out of the decompressor at a time (a small gzip can expand enormously)
MAX_NAME_BYTES = 200


class RemoteRefused(BadInput):
    """A remote file that was not fetched: its URL's scheme, its address, its redirects, its HTTP
    status, its time or its connection. The message names the URL and the reason (also `url`,
    `reason`); it never carries the operating system's own words about a connection."""

    def __init__(self, url: str, reason: str, param: str | None = None) -> None:
        self.url = url
        self.reason = reason.rstrip(".")
        super().__init__(f"Could not fetch {shown(url)}: {self.reason}.", param)

    def __reduce__(self) -> tuple:
        return type(self), (self.url, self.reason, self.param)


class AddressRefused(Exception):
    """Raised by `CheckedBackend` where a host resolves to an address the policy forbids (turned
    into a RemoteRefused naming the URL by `fetch_to`)."""

    def __init__(self, host: str, address: IPAddress, kind: str) -> None:
        super().__init__(f"{host} ({address}) is a {kind} address")
        self.host, self.address, self.kind = host, address, kind


class TlsFailed(httpcore.ConnectError):
    """No verified TLS connection: the certificate does not verify for the URL's host name, or the handshake failed."""


@dataclass(frozen=True)
class FetchPolicy:
    """What a remote fetch may do. `allow` is the operator's allow-list (`--remote-media-allow`):
    IP addresses or CIDR networks ("127.0.0.1", "10.0.0.0/8", "fd12::/16") that may be fetched
    although not public; a bad entry is a BadSetting naming the flag, raised when the policy is made."""

    timeout: float = 10.0  # seconds for the whole fetch (resolving, connecting, redirects, all bytes), not per read
    max_bytes: int = 200 * 2**20  # body bytes (decoded); more is TooLarge
    allow: tuple[str, ...] = ()  # IPs or CIDR networks that may be fetched although not public
    max_redirects: int = 5
    networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # one entry given bare would be read as its characters; a list (argparse's) is kept as a tuple
        object.__setattr__(self, "allow", (self.allow,) if isinstance(self.allow, str) else tuple(self.allow))
        object.__setattr__(self, "networks", allow_networks(self.allow))
        if not self.timeout > 0:
            raise BadSetting(f"The remote fetch timeout must be a positive number of seconds, not {self.timeout!r}.")
        if self.max_bytes < 0 or self.max_redirects < 0:
            raise BadSetting(f"max_bytes and max_redirects must not be negative (got {self.max_bytes}, {self.max_redirects}).")

    def refusal(self, address: IPAddress) -> str | None:
        """Why this address may not be fetched (the kind of address it is), or None if it may."""
        forms = embedded_forms(address)
        kind = next((k for k in map(address_kind, forms) if k is not None), None)
        if kind is None:
            return None
        if kind == "cloud metadata":  # only an entry naming the very address allows it
            allowed = any(n.num_addresses == 1 and a in n for n in self.networks for a in forms if a.version == n.version)
        else:
            allowed = any(a in n for n in self.networks for a in forms if a.version == n.version)
        return None if allowed else kind


@dataclass(frozen=True)
class Fetched:
    """A fetched file: its safe base name (from the final URL's path, or "download"; never with a
    directory part), the Content-Type the server gave, and its size in bytes as written."""

    name: str
    content_type: str | None
    size: int


def allow_networks(entries: Iterable[str], flag: str = ALLOW_FLAG) -> tuple[IPNetwork, ...]:
    """The allow-list's entries as networks; a bad one is a BadSetting naming `flag` and the entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise BadSetting(
                f"{flag} {entry!r} is not an IP address or CIDR network (such as 127.0.0.1, 10.0.0.0/8 or fd00::/8).", param=flag
            ) from None
    return tuple(networks)


def embedded_forms(address: IPAddress) -> list[IPAddress]:
    """Any IPv4 address the address carries (IPv4-mapped, NAT64, 6to4, Teredo's client), then the
    address itself: each is judged, the carried one first, so ::ffff:127.0.0.1 is as loopback as 127.0.0.1."""
    forms: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            forms.append(address.sixtofour)
        if address.teredo is not None:
            forms.append(address.teredo[1])
        if any(address in n for n in NAT64):
            forms.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [*forms, address]


def address_kind(address: IPAddress) -> str | None:
    """The kind of a non-public address ("loopback", "private", ...), or None for a public one.
    At least as strict as Gradio's `ssrf_protected_download`: anything not globally routable is refused."""
    if address in METADATA:
        return "cloud metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified or address.is_reserved:
        return "reserved or unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED:
        return "shared (carrier-grade NAT)"
    if address.is_private or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "private"
    if not address.is_global:
        return "reserved or unspecified"
    return None


def shown(url: str, limit: int = 300) -> str:
    """A URL as messages show it: cut short if very long."""
    return url if len(url) <= limit else url[: limit - 1] + "…"


class Deadline:
    """One time limit over a whole fetch: every wait is cut to what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, timeout: float | None = None, expired: type[Exception] = httpcore.ReadTimeout) -> float:
        """Seconds the next wait may take (at most `timeout`); raises `expired` when none are left."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise expired(f"the fetch took longer than {self.seconds:g} s")
        return left if timeout is None else min(timeout, left)


@contextmanager
def _mapped(timed_out: type[Exception], failed: type[Exception]) -> Iterator[None]:
    """Socket errors as httpcore's, as its own streams map them (the OS's text stays on the cause only)."""
    try:
        yield
    except TimeoutError as error:  # socket.timeout
        raise timed_out("timed out") from error
    except OSError as error:  # ssl.SSLError included
        raise failed(type(error).__name__) from error


class CheckedStream(httpcore.NetworkStream):
    """A connected socket whose every wait is cut to the fetch's deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            self.sock.settimeout(self.deadline.left(timeout, httpcore.ReadTimeout))
            return self.sock.recv(max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            while buffer:
                self.sock.settimeout(self.deadline.left(timeout, httpcore.WriteTimeout))
                buffer = buffer[self.sock.send(buffer) :]

    def close(self) -> None:
        self.sock.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None) -> CheckedStream:
        # httpcore passes the URL's host name (or the request's sni_hostname): the certificate is
        # checked against the name, although the socket was connected to a checked IP literal.
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                self.sock.settimeout(self.deadline.left(timeout, httpcore.ConnectTimeout))
                try:
                    return CheckedStream(ssl_context.wrap_socket(self.sock, server_hostname=server_hostname), self.deadline)
                except ssl.SSLError as error:  # its own kind: httpcore's pool re-raises errors `from None`
                    raise TlsFailed(type(error).__name__) from error
        except BaseException:
            self.sock.close()
            raise

    def get_extra_info(self, info: str) -> object:
        if info == "ssl_object":
            return self.sock if isinstance(self.sock, ssl.SSLSocket) else None  # has selected_alpn_protocol()
        if info == "client_addr":
            return self.sock.getsockname()
        if info == "server_addr":
            return self.sock.getpeername()
        if info == "socket":
            return self.sock
        if info == "is_readable":  # an idle kept-alive connection the server has closed
            try:
                return bool(select.select([self.sock], [], [], 0)[0])
            except (OSError, ValueError):
                return True
        return None


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's network backend, checking each connection's address against the policy.

    `connect_tcp` resolves the host (with `socket.getaddrinfo`, within the deadline), refuses the
    connection if any of the addresses is forbidden (a name with a private address among public
    ones is refused whole: which one a connection would reach is not ours to choose), connects to
    the checked addresses themselves in turn (no second resolution), and checks the connected peer.
    """

    def __init__(self, policy: FetchPolicy, deadline: Deadline) -> None:
        self.policy = policy
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple] | None = None,
    ) -> CheckedStream:
        resolved = self.resolve(host, port)
        for _family, sockaddr in resolved:
            address = ipaddress.ip_address(sockaddr[0])
            kind = self.policy.refusal(address)
            if kind is not None:
                log.info("remote fetch refused: %s resolves to %s, a %s address", host, address, kind)
                raise AddressRefused(host, address, kind)
        last: Exception = httpcore.ConnectError("no address")
        for family, sockaddr in resolved:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                    sock.settimeout(self.deadline.left(timeout, httpcore.ConnectTimeout))
                    if local_address is not None:
                        sock.bind((local_address, 0))
                    sock.connect(sockaddr)
                    for option in socket_options or ():
                        sock.setsockopt(*option)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    peer = ipaddress.ip_address(sock.getpeername()[0])
            except httpcore.ConnectError as error:
                sock.close()
                last = error
                continue
            except BaseException:
                sock.close()
                raise
            kind = self.policy.refusal(peer)
            if kind is not None:  # not what was checked: refuse rather than talk to it
                sock.close()
                raise AddressRefused(host, peer, kind)
            return CheckedStream(sock, self.deadline)
        raise last

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """The host's (family, sockaddr) pairs, each address once; a resolver that does not answer
        within the deadline is left behind (on a daemon thread) as a ConnectTimeout."""
        answer: list = []

        def run() -> None:
            try:
                answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except (OSError, UnicodeError) as error:
                answer.append(error)

        wait = self.deadline.left(None, httpcore.ConnectTimeout)
        thread = threading.Thread(target=run, name="fetch-resolve", daemon=True)
        thread.start()
        thread.join(wait)
        if not answer:
            raise httpcore.ConnectTimeout("resolving timed out")
        if isinstance(answer[0], Exception):
            raise httpcore.ConnectError("could not resolve") from answer[0]
        seen: dict[tuple, tuple[int, tuple]] = {}
        for family, _, _, _, sockaddr in answer[0]:
            if family in (socket.AF_INET, socket.AF_INET6):
                seen.setdefault(sockaddr[:2], (family, sockaddr))
        if not seen:
            raise httpcore.ConnectError("no address")
        return list(seen.values())


def fetch_to(url: str, path: Path, policy: FetchPolicy) -> Fetched:
    """Stream `url`'s body into `path` (created, its folder too; removed again on any failure),
    following at most `policy.max_redirects` redirects, every connection checked by `CheckedBackend`.

    Raises RemoteRefused (a BadInput naming the URL and why) for a URL that is not http(s), an
    address that is not public (and not allowed), too many redirects, an HTTP status that is not a
    success, the deadline, a connection that fails; TooLarge past `policy.max_bytes` (by
    Content-Length before reading, or by the bytes received).
    """
    path = Path(path)
    deadline = Deadline(policy.timeout)
    current = checked_url(url, url)
    written = False
    try:
        with httpcore.ConnectionPool(network_backend=CheckedBackend(policy, deadline), retries=0, http1=True, http2=False) as pool:
            redirects = 0
            while True:
                with pool.stream("GET", core_url(current), headers=request_headers(current)) as response:
                    location = header(response, b"location")
                    if response.status in REDIRECTS and location is not None:  # closed unread: its body is never read
                        if redirects == policy.max_redirects:
                            raise RemoteRefused(url, f"it redirects more than {policy.max_redirects} times")
                        redirects += 1
                        current = checked_url(str(current.join(location)), url)
                        continue
                    if not 200 <= response.status < 300:
                        raise RemoteRefused(url, f"the server answered HTTP {response.status}")
                    declared = header(response, b"content-length")
                    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise TooLarge(too_large(url, policy.max_bytes))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    written = True
                    size = save(url, response, path, policy, deadline)
                    return Fetched(safe_name(current), header(response, b"content-type"), size)
    except BaseException as error:
        if written:
            path.unlink(missing_ok=True)
        refused = refusal(url, current, error, policy)
        if refused is None:
            raise
        raise refused from error


def refusal(url: str, current: httpx.URL, error: BaseException, policy: FetchPolicy) -> RemoteRefused | None:
    """The user's error for a failed fetch (None: raise the error as it is)."""
    host = current.host
    via = "" if str(current) == url else f"it redirects to {shown(str(current))}, and "
    if isinstance(error, AddressRefused):
        where = f"{host} is a {error.kind} address" if is_ip(host) else f"{host} resolves to a {error.kind} address"
        return RemoteRefused(url, f"{via}{where}, which this server does not fetch from (its operator can allow it with {ALLOW_FLAG})")
    if isinstance(error, httpcore.TimeoutException):
        return RemoteRefused(url, f"it took longer than the {policy.timeout:g} s a fetch may take")
    if isinstance(error, httpcore.ConnectError):
        if isinstance(error, TlsFailed):
            return RemoteRefused(url, f"{via}could not make a verified TLS connection to {host}")
        return RemoteRefused(url, f"{via}could not connect to {host}")
    if isinstance(error, httpcore.NetworkError):
        return RemoteRefused(url, f"the connection to {host} broke off")
    if isinstance(error, httpcore.ProtocolError):
        return RemoteRefused(url, f"{host} did not answer in HTTP")
    if isinstance(error, httpcore.UnsupportedProtocol):
        return RemoteRefused(url, f"{via}only http and https URLs are fetched")
    if isinstance(error, zlib.error):
        return RemoteRefused(url, "its compressed body is corrupt")
    return None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def checked_url(text: str, original: str) -> httpx.URL:
    """`text` parsed, if it is an http(s) URL with a host; a RemoteRefused naming `original` if not."""
    via = "" if text == original else f"it redirects to {shown(text)}, but "
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise RemoteRefused(original, f"{via}it is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise RemoteRefused(original, f"{via}only http and https URLs are fetched, not {parsed.scheme or 'a URL without a scheme'}")
    if not parsed.host:
        raise RemoteRefused(original, f"{via}it names no host")
    return parsed


def core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path or b"/")


def request_headers(url: httpx.URL) -> list[tuple[bytes, bytes]]:
    # Host from httpx's netloc: IPv6 in brackets, the port only when not the default (no credentials)
    return [(b"Host", url.netloc), (b"Accept", b"*/*"), (b"Accept-Encoding", b"identity"), (b"User-Agent", b"pandagpt-demo")]


def header(response: httpcore.Response, name: bytes) -> str | None:
    value = next((v for k, v in response.headers if k.lower() == name), None)
    return None if value is None else value.decode("latin-1").strip()


def too_large(url: str, limit: int) -> str:
    return f"Could not fetch {shown(url)}: the file is larger than the {limit / 2**20:g} MB the server accepts."


def save(url: str, response: httpcore.Response, path: Path, policy: FetchPolicy, deadline: Deadline) -> int:
    """The body, decoded, written to `path` as it arrives; its size. Stops at the deadline and past max_bytes."""
    encoding = (header(response, b"content-encoding") or "identity").lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise RemoteRefused(url, f"the server sent it in an encoding this server does not read ({encoding})")
    size = 0
    with path.open("wb") as out:
        for piece in decoded(response.iter_stream(), encoding):
            deadline.left()
            size += len(piece)
            if size > policy.max_bytes:
                raise TooLarge(too_large(url, policy.max_bytes))
            out.write(piece)
    return size


def decoded(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """The body's bytes with its Content-Encoding undone, never more than DECODED_STEP bytes at once."""
    if encoding == "identity":
        yield from chunks
        return
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header, whichever it has
    for chunk in chunks:
        data = chunk
        while data:
            yield inflater.decompress(data, DECODED_STEP)
            data = inflater.unconsumed_tail
    yield inflater.flush()


def safe_name(url: httpx.URL) -> str:
    """The last segment of the URL's path, percent-decoded, as a base name (never a directory part,
    a control character, "." or ".."); "download" when there is none."""
    segment = url.raw_path.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("ascii", "replace")
    name = unquote(segment).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c if c.isprintable() else "_" for c in name).strip()
    if name in ("", ".", ".."):
        return "download"
    if len(name.encode()) > MAX_NAME_BYTES:  # cut the stem, keeping the suffix: it says what kind of file it is
        stem, dot, suffix = name.rpartition(".")
        if not (dot and stem and len(suffix.encode()) < 16):
            stem, suffix = name, ""
        room = MAX_NAME_BYTES - len(suffix.encode()) - len(dot)
        name = stem.encode()[:room].decode("utf-8", "ignore") + (dot + suffix if suffix else "")
    return name
