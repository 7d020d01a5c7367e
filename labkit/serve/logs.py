"""The server's log lines: one format for labkit's and uvicorn's, text or JSON, and an
opt-in access log.

``configure(level, "json")`` writes every record (labkit's, uvicorn's, gRPC front end's) as
one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and
for access lines ``client``, ``method``, ``path``, ``status``, ``duration_ms``, ``protocol``,
``model``, ``version``. uvicorn is started without a logging config of its own, so its lines
go through the same handler. Text lines escape what a client chose (paths): a newline in a
URL cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "access_log", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS = logging.getLogger("labkit.access")
_FIELDS = (
    "client",
    "method",
    "path",
    "status",
    "duration_ms",
    "protocol",
    "model",
    "version",
    "request_id",
)
_MAX_PATH = 512


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        doc: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """One handler on the root logger, in ``fmt``; uvicorn's loggers propagate to it."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def printable(text: str) -> str:
    """``text`` with control and non-printable characters escaped, and bounded."""
    if len(text) > _MAX_PATH:
        text = text[:_MAX_PATH] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def access_log(
    *,
    protocol: str,
    client: str,
    method: str,
    path: str,
    status: int | str,
    duration_s: float,
    model: str | None = None,
    version: str | None = None,
) -> None:
    """One access line (logger ``labkit.access``, INFO)."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    path = printable(path)
    ms = round(duration_s * 1000, 3)
    served = f" {model} {version}" if model else ""
    ACCESS.info(
        "%s %s %s %s %s %.1fms%s",
        client,
        protocol,
        method,
        path,
        status,
        ms,
        served,
        extra={
            "client": client,
            "protocol": protocol,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": ms,
            "model": model,
            "version": version,
        },
    )
