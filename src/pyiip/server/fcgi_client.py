"""A minimal FastCGI client: health probes of a FastCGI-only deployment, and tests.

flup's own client is broken on Python 3, and a container or a monitoring
script that talks to ``pyiip.fcgi --bind ...`` directly (no web server in
front) needs one. It speaks just enough of the protocol: one responder
request per call, optionally on a kept-alive connection.

    python -m pyiip.server.fcgi_client 127.0.0.1:9000 /health     # exit 0 when the answer is 2xx
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass, field

from pyiip.server.fastcgi import (
    BEGIN_REQUEST,
    END_REQUEST,
    HEADER,
    KEEP_CONN,
    MAX_CONTENT,
    PARAMS,
    RESPONDER,
    STDIN,
    STDOUT,
    encode_pairs,
    encode_record,
)

STDERR = 7  # the responder never writes it; a reply from another server may


@dataclass
class ResponderOutput:
    """A parsed CGI-style reply: status, headers (in order), body, and what went to FastCGI stderr."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stderr: bytes = b""
    app_status: int = 0
    raw_headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.raw_headers.get(name.lower())


def connect(address: str, timeout: float = 30.0) -> socket.socket:
    """A unix socket for a path (contains '/'), else TCP HOST:PORT."""
    if "/" in address:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    host, _, port = address.rpartition(":")
    return socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout)


def environ_for(uri: str, host: str = "localhost", method: str = "GET", **extra: str) -> dict[str, str]:
    """The CGI parameters a web server sends for ``uri`` (path and query, still encoded)."""
    path, _, query = uri.partition("?")
    return {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "SCRIPT_NAME": path,
        "PATH_INFO": "",
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
        **extra,
    }


def opening(params: dict[str, str], request_id: int = 1, keep_conn: bool = False) -> bytes:
    """BEGIN_REQUEST and the parameters as records; the request stays open until STDIN ends."""
    body = struct.pack("!HB5x", RESPONDER, KEEP_CONN if keep_conn else 0)
    encoded = encode_pairs({k.encode("latin-1"): v.encode("latin-1") for k, v in params.items()})
    return (
        encode_record(BEGIN_REQUEST, request_id, body)
        + encode_record(PARAMS, request_id, encoded)
        + encode_record(PARAMS, request_id)
    )


def begin(sock: socket.socket, params: dict[str, str], request_id: int = 1, keep_conn: bool = False) -> None:
    """Send BEGIN_REQUEST and the parameters, but not the end of stdin: the request is open."""
    sock.sendall(opening(params, request_id, keep_conn))


def stdin(body: bytes, request_id: int = 1) -> bytes:
    """The request body as STDIN records, and the empty one that ends it."""
    chunks = (body[start : start + MAX_CONTENT] for start in range(0, len(body), MAX_CONTENT))
    return b"".join(encode_record(STDIN, request_id, chunk) for chunk in chunks) + encode_record(STDIN, request_id)


def finish(sock: socket.socket, request_id: int = 1, body: bytes = b"") -> ResponderOutput:
    """Send the request body and end stdin (the application runs now); read the reply up to END_REQUEST."""
    sock.sendall(stdin(body, request_id))
    out, err = bytearray(), bytearray()
    while True:
        header = _read(sock, HEADER.size)
        _version, kind, rid, length, padding = HEADER.unpack(header)
        content = _read(sock, length + padding)[:length]
        if rid != request_id:
            continue
        if kind == STDOUT:
            out += content
        elif kind == STDERR:
            err += content
        elif kind == END_REQUEST:
            return _parse(bytes(out), bytes(err), struct.unpack("!I", content[:4])[0])


def _read(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("FastCGI server closed the connection mid-reply")
        chunks += chunk
    return bytes(chunks)


def _parse(out: bytes, err: bytes, app_status: int) -> ResponderOutput:
    head, _, body = out.partition(b"\r\n\r\n")
    headers: list[tuple[str, str]] = []
    status = 200
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value))
    return ResponderOutput(status, headers, body, err, app_status, {k.lower(): v for k, v in headers})


def request(address: str, uri: str, timeout: float = 30.0, body: bytes = b"", **extra: str) -> ResponderOutput:
    """One request on a fresh connection, as lighttpd, mod_fcgid and nginx (keep-conn off) do it.

    With a body, a POST (its CONTENT_LENGTH set) unless ``extra`` names the method.
    """
    if body:
        extra = {"method": "POST", "CONTENT_LENGTH": str(len(body)), **extra}
    with connect(address, timeout) as sock:
        begin(sock, environ_for(uri, **extra))
        return finish(sock, body=body)


def main(argv: list[str] | None = None) -> int:
    """``python -m pyiip.server.fcgi_client ADDRESS [URI]``: print the reply, exit 0 on a 2xx status."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pyiip.server.fcgi_client", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT or /path/to/socket of a pyiip.fcgi process")
    parser.add_argument("uri", nargs="?", default="/health", help="request URI (default /health)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing, only set the exit status")
    args = parser.parse_args(argv)
    try:
        reply = request(args.address, args.uri, args.timeout)
    except (OSError, ConnectionError) as exc:
        if not args.quiet:
            print(f"pyiip: no FastCGI answer from {args.address}: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        sys.stdout.buffer.write(reply.body)
        sys.stdout.flush()
    return 0 if 200 <= reply.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
