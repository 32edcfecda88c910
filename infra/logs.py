"""Structured logs for the long-running processes (serve, relay, scheduler, worker): one JSON
object a line on stderr, with the time, level, logger and message, and the request's context
where there is one (request id, route, status, latency, case id, actor id).

What goes in is chosen, never dumped: a record's extras are kept only when ``CONTEXT`` names them,
so no body, query string, header or token reaches a log line, and nobody's name, date of birth or
clinical text (PHI) does either. Level: CASELOG_LOG_LEVEL (default info)."""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import datetime, timezone
from typing import Any

import orjson

# the extras a log line may carry: identifiers and measurements, never request or event content
CONTEXT = ("request_id", "method", "route", "status", "latency_ms", "case_id", "actor_id", "actor_kind",
           "component", "position", "lag", "parked", "fired", "topic")
LEVELS = ("debug", "info", "warning", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"  # no traceback locals, no PHI
        try:
            return orjson.dumps(line, default=str).decode()  # a line per request: the standard encoder's cost shows
        except TypeError:  # text orjson refuses (a lone surrogate) or an integer beyond 64 bits
            return json.dumps(line, ensure_ascii=False, default=str)


def dict_config(level: str = "info", libraries: str = "warning") -> dict[str, Any]:
    """The logging configuration (logging.config.dictConfig): JSON lines on stderr for caselog's
    loggers at ``level`` and the libraries' at ``libraries``; uvicorn's access log is replaced by
    caselog's own (``caselog.access``). Faust's worker takes it as its ``logging_config``."""
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": libraries.upper()},
        "loggers": {"caselog": {"level": level.upper()}, "uvicorn": quiet, "uvicorn.error": quiet,
                    "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"}},
    }


def configure(level: str = "info") -> None:
    logging.config.dictConfig(dict_config(level))
