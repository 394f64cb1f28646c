"""The FastCGI responder, record by record, over a socket pair (the web server side is the test)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from pyiip.http import Reply
from pyiip.server import fastcgi
from pyiip.server.fastcgi import encode_record
from pyiip.server.fcgi_client import environ_for, opening

HEADER = struct.Struct("!BBHHBx")


def handler(environ):
    body = (environ["QUERY_STRING"] * int(environ.get("HTTP_REPEAT", "1"))).encode("latin-1")
    return Reply("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))], body)


def begin(request_id: int = 1, keep: bool = False, role: int = fastcgi.RESPONDER) -> bytes:
    return encode_record(fastcgi.BEGIN_REQUEST, request_id, struct.pack("!HB5x", role, int(keep)))


def params(values: dict[str, str], request_id: int = 1) -> bytes:
    encoded = fastcgi.encode_pairs({k.encode("latin-1"): v.encode("latin-1") for k, v in values.items()})
    return encode_record(fastcgi.PARAMS, request_id, encoded) + encode_record(fastcgi.PARAMS, request_id)


def full_request(query: str, request_id: int = 1, keep: bool = False, **headers: str) -> bytes:
    values = environ_for(f"/x?{query}", **{f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return opening(values, request_id, keep) + encode_record(fastcgi.STDIN, request_id)


def records(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        _v, kind, rid, length, padding = HEADER.unpack_from(data, pos)
        out.append((kind, rid, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + padding
    return out


def serve_one(responder: fastcgi.Responder, server_side: socket.socket, timeout: float = 10) -> None:
    """What the responder's loop does for one connection: serve it at once, then while it waits, poll."""
    deadline = time.monotonic() + timeout
    responder.serve_connection(server_side)
    while responder.connections and time.monotonic() < deadline:
        responder.step(0.05)


def exchange(*chunks: bytes, close: bool = True, send_buffer: int = 0) -> list[tuple[int, int, bytes]]:
    """Send chunks to a responder serving one connection; all it answered, as records.

    ``send_buffer``: the responder's socket takes only that much at a time (replies go out in parts).
    """
    server_side, client = socket.socketpair()
    if send_buffer:
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    responder = fastcgi.Responder(handler, socket.socket())
    worker = threading.Thread(target=serve_one, args=(responder, server_side))
    worker.start()
    for chunk in chunks:
        client.sendall(chunk)
    if close:
        client.shutdown(socket.SHUT_WR)
    received = b""
    client.settimeout(10)
    while chunk := client.recv(65536):
        received += chunk
    worker.join(10)
    client.close()
    return records(received)


def test_one_request_one_reply():
    got = exchange(full_request("FIF=a.tif&JTL=0,0"))
    kinds = [kind for kind, _rid, _c in got]
    assert kinds == [fastcgi.STDOUT, fastcgi.STDOUT, fastcgi.END_REQUEST]
    assert got[0][2].startswith(b"Status: 200 OK\r\nContent-Type: text/plain\r\n")
    assert got[0][2].endswith(b"\r\n\r\nFIF=a.tif&JTL=0,0")
    assert got[1][2] == b"" and got[2][2] == struct.pack("!IB3x", 0, fastcgi.REQUEST_COMPLETE)


def test_records_split_anywhere_are_reassembled():
    data = full_request("a=1")
    got = exchange(*(data[i : i + 3] for i in range(0, len(data), 3)))
    assert got[0][2].endswith(b"a=1")


def test_a_large_reply_is_split_into_records():
    got = exchange(full_request("x" * 1000, repeat="300"))  # 300 KB
    stdout = [c for kind, _r, c in got if kind == fastcgi.STDOUT]
    assert max(len(c) for c in stdout) <= 65535 and len(stdout) > 5
    assert b"".join(stdout).endswith(b"x" * 300000)


def test_replies_the_socket_takes_in_parts_arrive_whole_and_in_order():
    """A reply sent as header, body and end records in one sendmsg, taken a few KB at a time."""
    query = "".join(chr(48 + k % 75) for k in range(1000))
    got = exchange(
        full_request(query, 1, keep=True, repeat="60"),  # 60 KB: one record, the largest kind sent gathered
        full_request("second", 2, keep=True),
        send_buffer=4096,
    )
    one, two = (((fastcgi.STDOUT, rid), (fastcgi.STDOUT, rid), (fastcgi.END_REQUEST, rid)) for rid in (1, 2))
    assert [(kind, rid) for kind, rid, _c in got] == [*one, *two]
    assert got[0][2].endswith(b"\r\n\r\n" + query.encode() * 60)
    assert got[3][2].endswith(b"\r\n\r\nsecond")


def test_thousands_of_management_records_in_one_write_are_all_answered():
    """More answers queued than one sendmsg may gather (IOV_MAX): they go out in turns."""
    unknown = encode_record(99, 0, b"\x00" * 8)
    got = exchange(unknown * 2000 + full_request("q"))
    assert got[:2000] == [(fastcgi.UNKNOWN_TYPE, 0, bytes((99,)) + b"\x00" * 7)] * 2000
    assert got[2000][2].endswith(b"q") and got[-1][0] == fastcgi.END_REQUEST


def test_parameters_over_several_records_are_gathered():
    encoded = fastcgi.encode_pairs({k.encode(): v.encode() for k, v in environ_for("/x?FIF=a.tif&JTL=1,2").items()})
    pieces = [encoded[:5], encoded[5:9], encoded[9:]]  # cut inside a name-value pair
    opening_records = begin(1) + b"".join(encode_record(fastcgi.PARAMS, 1, piece) for piece in pieces)
    got = exchange(opening_records + encode_record(fastcgi.PARAMS, 1) + encode_record(fastcgi.STDIN, 1))
    assert got[0][2].endswith(b"\r\n\r\nFIF=a.tif&JTL=1,2")


def test_kept_connection_serves_several_requests():
    got = exchange(full_request("one", 1, keep=True), full_request("two", 2, keep=True))
    bodies = [(rid, c) for kind, rid, c in got if kind == fastcgi.STDOUT and c]
    assert [rid for rid, _ in bodies] == [1, 2]
    assert bodies[0][1].endswith(b"one") and bodies[1][1].endswith(b"two")


def test_get_values_and_unknown_management_records():
    query = fastcgi.encode_pairs({b"FCGI_MAX_CONNS": b"", b"FCGI_MPXS_CONNS": b"", b"OTHER": b""})
    got = exchange(encode_record(fastcgi.GET_VALUES, 0, query) + encode_record(99, 0, b"\x00" * 8) + full_request("q"))
    assert got[0][:2] == (fastcgi.GET_VALUES_RESULT, 0)
    assert fastcgi.decode_pairs(got[0][2]) == {"FCGI_MAX_CONNS": "1", "FCGI_MPXS_CONNS": "0"}
    assert got[1] == (fastcgi.UNKNOWN_TYPE, 0, bytes((99,)) + b"\x00" * 7)
    assert got[2][2].endswith(b"q")


def test_multiplexing_and_other_roles_are_refused():
    second = begin(2)
    got = exchange(begin(1) + second + params(environ_for("/x?a"), 1) + encode_record(fastcgi.STDIN, 1))
    assert got[0] == (fastcgi.END_REQUEST, 2, struct.pack("!IB3x", 0, fastcgi.CANT_MPX_CONN))
    assert got[1][2].endswith(b"a")
    got = exchange(begin(1, role=2) + full_request("b", 3))
    assert got[0] == (fastcgi.END_REQUEST, 1, struct.pack("!IB3x", 0, fastcgi.UNKNOWN_ROLE))


def test_abort_ends_the_request_without_running_it():
    got = exchange(begin(1) + params(environ_for("/x?a"), 1) + encode_record(fastcgi.ABORT_REQUEST, 1))
    assert got == [(fastcgi.END_REQUEST, 1, struct.pack("!IB3x", 0, fastcgi.REQUEST_COMPLETE))]


@pytest.mark.parametrize(
    "data",
    [
        b"\x02" + b"\x00" * 7,  # unknown protocol version
        begin(1) + encode_record(fastcgi.PARAMS, 1, b"\x05\x05ab"),  # truncated name-value pair
        begin(1)[:5],  # the web server went away mid-record
    ],
)
def test_broken_peers_lose_their_connection_not_the_process(data):
    assert exchange(data) == []


def test_long_names_and_values_use_four_byte_lengths():
    value = "v" * 300
    encoded = fastcgi.encode_pairs({b"N" * 200: value.encode()})
    assert encoded[0] & 0x80 and fastcgi.decode_pairs(encoded) == {"N" * 200: value}
