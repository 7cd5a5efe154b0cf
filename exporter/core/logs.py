"""Structured logs: JSON when not on a terminal, console otherwise; secrets never printed.

Every API key the process reads is registered here, and a processor replaces it wherever it occurs
in an event (message, fields, exception text) before anything is rendered.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Keys shorter than this are not redacted by substring: they would blank out ordinary words.
_MIN_SECRET_LENGTH = 4


# Pieces every text holding a key (or a key's cut head or tail) contains: a text with none of
# them needs no masking, which a hot path checks without taking the lock.
_fragments: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    global _fragments  # noqa: PLW0603 - replaced whole, so readers never see it half-built
    if len(value) >= _MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value)
            _fragments = tuple(
                sorted({piece for s in _secrets for piece in (s[:_MIN_PARTIAL], s[-_MIN_PARTIAL:])})
            )


def may_hold_secret(text: str) -> bool:
    """False only when `text` certainly holds no registered key, whole or cut."""
    return any(piece in text for piece in _fragments)


def registered_secrets() -> frozenset[str]:
    with _secrets_lock:
        return frozenset(_secrets)


# A key cut short by an earlier truncation leaves its head at the end of a text (or its tail at
# the start); that many of its characters are masked too.
_MIN_PARTIAL = 6


def redact(text: str) -> str:
    if not may_hold_secret(text):
        # Every text a key would be masked in holds one of its fragments (whole, or its head or
        # tail of at least `_MIN_PARTIAL` characters): without any, `mask` changes nothing.
        return text
    with _secrets_lock:
        secrets = list(_secrets)
    return mask(text, secrets)


def mask(text: str, secrets: Iterable[str], replacement: str = REDACTED) -> str:
    """Every secret in `text` replaced, and a secret's head ending the text or tail starting it.

    Truncate after masking where possible; the ends are masked for the texts that were cut
    before they got here (a provider's message cut to a length, say)."""
    ordered = sorted((s for s in secrets if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True)
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, replacement)
    for secret in ordered:
        text = _mask_ends(text, secret, replacement)
    return text


def _mask_ends(text: str, secret: str, replacement: str) -> str:
    longest = min(len(secret) - 1, len(text))
    if longest < _MIN_PARTIAL:
        return text
    if secret[:_MIN_PARTIAL] in text[-longest:]:
        for size in range(longest, _MIN_PARTIAL - 1, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + replacement
                break
    if secret[-_MIN_PARTIAL:] in text[:longest]:
        for size in range(longest, _MIN_PARTIAL - 1, -1):
            if text.startswith(secret[-size:]):
                text = replacement + text[size:]
                break
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: _redact_value(value) for key, value in event.items()}


def _redact_rendered(_logger: Any, _method: str, rendered: Any) -> Any:
    # Last line of defence, after rendering (tracebacks are formatted by then).
    return redact(rendered) if isinstance(rendered, str) else rendered


# The root logger's handler `configure` installed last, replaced by the next call.
_root_handler: logging.Handler | None = None


def configure(
    level: str = "info",
    fmt: str | None = None,
    stream: TextIO | None = None,
    quiet_events: frozenset[str] = frozenset(),
) -> None:
    """`quiet_events`: events logged at debug whatever level they were logged at (the demo's
    per-run lines, which its per-cycle summaries replace)."""
    global _root_handler  # noqa: PLW0603 - one handler on the root logger, swapped whole
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        *([_quieted(quiet_events, numeric)] if quiet_events else []),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    rendering: list[Any] = [structlog.processors.format_exc_info] if fmt == "json" else []
    rendering += [renderer, _redact_rendered]
    structlog.configure(
        processors=shared + rendering,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (apscheduler, httpx, the stdlib itself): their
    # records are rendered by the same processors, so they are lines like ours, keys redacted.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    if _root_handler is not None:
        root.removeHandler(_root_handler)
    root.addHandler(handler)
    _root_handler = handler
    root.setLevel(max(numeric, logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _quieted(events: frozenset[str], threshold: int) -> Any:
    def processor(
        _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event.get("event") in events:
            if threshold > logging.DEBUG:
                raise structlog.DropEvent
            event["level"] = "debug"
        return event

    return processor


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
