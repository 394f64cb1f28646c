"""Logging as iipsrv does it: LOGFILE (a path or ``syslog``) and VERBOSITY levels; LOG_FORMAT text or json.

VERBOSITY 0 logs nothing, 1 warnings and errors, 2 start and stop and one line per request with
its timing, 3 and more debugging detail. A log file that cannot be written
(missing directory, full disk) never fails a request.

A request's line carries its fields in the record (``extra={"request": {...}}``):
the text format writes them as logfmt (``kind=iip_tile status=200 ...``),
the json format as members of one JSON object per line, next to ``time``,
``level``, ``pid`` and ``message``, so log shippers parse either as it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import sys
import time
from typing import Any

from pyiip.config import Settings

LOGGER = logging.getLogger("pyiip")


class _SafeFileHandler(logging.FileHandler):
    """A file handler that drops records it cannot write instead of printing tracebacks."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging API
        pass


def logfmt(value: object) -> str:
    """A logfmt value: bare when safe, else double-quoted with JSON escapes (never a raw newline)."""
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """The message, then a request's fields as logfmt."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging API
        text = super().formatMessage(record)
        fields: dict[str, Any] | None = getattr(record, "request", None)
        if fields is None:
            return text
        return text + "".join(f" {k}={v:.2f}" if k == "ms" else f" {k}={logfmt(v)}" for k, v in fields.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, pid, message, a request's fields, an exception."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{moment}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "request", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


def setup(settings: Settings) -> logging.Logger:
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        with contextlib.suppress(OSError):  # its last buffered lines cannot be written (a full disk, /dev/full)
            handler.close()
    LOGGER.propagate = False
    if settings.verbosity <= 0:
        LOGGER.setLevel(logging.CRITICAL + 1)
        return LOGGER
    level = {1: logging.WARNING, 2: logging.INFO}.get(settings.verbosity, logging.DEBUG)
    if settings.logfile == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(TextFormatter("pyiip[%(process)d]: %(levelname)s %(message)s"))
    elif settings.logfile in ("-", "stderr"):
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = _SafeFileHandler(settings.logfile, delay=False)
        except OSError:
            handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif not isinstance(handler, logging.handlers.SysLogHandler):
        handler.setFormatter(
            TextFormatter("%(asctime)s.%(msecs)03d pyiip[%(process)d] %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    return LOGGER
