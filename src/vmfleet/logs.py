"""What a run did, for the user who asks (`-v`, `--debug`) and for later (a log file per run).

Every libvirt call and every outside program is logged by its driver with its duration, as
one event with key=value fields. Secrets never reach a log: passwords are registered with
`secret()` where they are read, and every record is scrubbed of them (and of anything that
looks like `password=...`) before it is written anywhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = "vmfleet"
KEEP_RUN_LOGS = 20
REDACTED = "***"

_secrets: set[str] = set()
_label = ["run"]
_ASSIGNED = re.compile(r"(?i)((?:password|passwd|secret|token)[\"']?\s*[=:]\s*[\"']?)[^\s\"',}]+")


def get(name: str) -> logging.Logger:
    """The logger for one part of vmfleet (`libvirt`, `commands`, ...)."""
    return logging.getLogger(f"{ROOT}.{name}")


def secret(value: str) -> str:
    """Remember `value` as a secret no log may show; returns it unchanged."""
    if len(value) >= 3:
        _secrets.add(value)
    return value


def redact(text: str) -> str:
    """`text` with every registered secret and every `password=...` value masked."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return _ASSIGNED.sub(lambda m: m.group(1) + REDACTED, text)


def event(logger: logging.Logger, message: str, level: int = logging.DEBUG, **fields: Any) -> None:
    """Log one event with its fields (kept structured on the record)."""
    logger.log(level, message, extra={"fields": fields})


@contextlib.contextmanager
def timed(logger: logging.Logger, message: str, **fields: Any) -> Iterator[None]:
    """Log `message` when the block ends, with `ms` (its duration) and `ok`."""
    start = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        ms = round((time.monotonic() - start) * 1000, 1)
        event(logger, message, **fields, ms=ms, ok=ok)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: _scrubbed(v) for k, v in fields.items()}
        return True


def _scrubbed(value: Any) -> Any:
    """Numbers stay numbers; anything else is text with its secrets masked."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "fields", None) or {})


class _Text(logging.Formatter):
    """`12:00:01.234 DEBUG libvirt: define domain host=local vm=web-0 ms=12.5 ok=True`."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        pairs = " ".join(f"{k}={_quoted(v)}" for k, v in _fields(record).items())
        name = record.name.removeprefix(f"{ROOT}.")
        return f"{at} {record.levelname} {name}: {record.getMessage()}" + (
            f" {pairs}" if pairs else ""
        )


class _Json(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                **_fields(record),
            },
            default=str,
        )


def _quoted(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def _handler(handler: logging.Handler, formatter: logging.Formatter) -> logging.Handler:
    handler.addFilter(_Redact())
    handler.setFormatter(formatter)
    logging.getLogger(ROOT).addHandler(handler)
    logging.getLogger(ROOT).setLevel(logging.DEBUG)
    return handler


def to_stderr(level: int) -> None:
    """Show events at `level` and above on stderr."""
    _handler(logging.StreamHandler(), _Text()).setLevel(level)


def label_run(command: str) -> None:
    """Name this run's log file after the command it runs."""
    _label[0] = command


def to_run_file(folder: Path) -> Path:
    """Write every event of this run to a new JSON-lines file in `folder`; keeps the last
    KEEP_RUN_LOGS files. Returns the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"{stamp}-{_label[0]}.log"
    _handler(logging.FileHandler(path, encoding="utf-8"), _Json()).setLevel(logging.DEBUG)
    for old in sorted(folder.glob("*.log"))[:-KEEP_RUN_LOGS]:
        old.unlink(missing_ok=True)
    return path
