"""SIGHUP for both servers: serve, and on each HUP re-read the settings and empty the caches."""

from __future__ import annotations

import logging
from typing import Protocol

from pyiip import config, log
from pyiip.respond.app import Application
from pyiip.server import limits


class Loop(Protocol):
    """A server loop (the FastCGI responder, the HTTP server): ``serve`` returns True after a SIGHUP."""

    timeout: float

    def serve(self) -> bool: ...


def serve_with_reloads(app: Application, loop: Loop, logger: logging.Logger) -> None:
    """Serve until TERM/INT; a bad setting on reload keeps the old ones (the caches are emptied all the same)."""
    while loop.serve():
        try:
            app.reload(config.load())
            log.setup(app.settings)
            limits.apply(app.settings)
            loop.timeout = app.settings.client_timeout
            logger.warning("SIGHUP: caches emptied, settings reloaded")
        except config.ConfigError as exc:
            app.service.clear()
            logger.error("SIGHUP: kept the old settings: %s", exc)
