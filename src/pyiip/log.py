"""Logging as iipsrv does it: LOGFILE (a path or ``syslog``) and VERBOSITY levels.

VERBOSITY 0 logs nothing, 1 start-up and errors, 2 one line per request with
its timing, 3 and more debugging detail. A log file that cannot be written
(missing directory, full disk) never fails a request.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

from pyiip.config import Settings

LOGGER = logging.getLogger("pyiip")


class _SafeFileHandler(logging.FileHandler):
    """A file handler that drops records it cannot write instead of printing tracebacks."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging API
        pass


def setup(settings: Settings) -> logging.Logger:
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        handler.close()
    LOGGER.propagate = False
    if settings.verbosity <= 0:
        LOGGER.setLevel(logging.CRITICAL + 1)
        return LOGGER
    level = {1: logging.WARNING, 2: logging.INFO}.get(settings.verbosity, logging.DEBUG)
    if settings.logfile == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("pyiip[%(process)d]: %(levelname)s %(message)s"))
    elif settings.logfile in ("-", "stderr"):
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = _SafeFileHandler(settings.logfile, delay=False)
        except OSError:
            handler = logging.StreamHandler(sys.stderr)
    if not isinstance(handler, logging.handlers.SysLogHandler):
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d pyiip[%(process)d] %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    return LOGGER
