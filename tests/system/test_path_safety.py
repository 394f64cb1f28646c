"""Path traversal over a real HTTP server: the raw request line reaches pyiip unnormalised."""

from __future__ import annotations

import socket

from tests.integration.test_path_safety import ATTEMPTS, URLS, leaks
from tests.support.servers import http_server


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """One request with the target bytes exactly as given (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target.encode("latin-1") + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head + body


def test_over_http(images):
    port, context = http_server(images.root, workers=1)
    with context:
        for attempt in ATTEMPTS[:30]:
            identifier = attempt.replace("{outside}", str(images.outside))
            for template in (URLS[0], URLS[4], URLS[10], URLS[17]):
                status, reply = _raw_get(port, template.replace("{id}", identifier))
                assert 400 <= status < 500, (template, identifier, status)
                assert not leaks(reply.partition(b"\r\n\r\n")[2], images), (identifier, reply[:300])
