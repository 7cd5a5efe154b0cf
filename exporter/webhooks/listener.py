"""`POST /webhooks/<source>` on its own listener (`--webhook.listen-address`), so /metrics can
stay internal while the platforms reach this one.

It runs on the same loop as /metrics (read deadlines, bounded workers and connections, strict
framing: see exporter.web.httploop and exporter.web.httpframing), with its own answers: a
request's body is read only once the source is known and its declared length is within bounds;
nothing else is served.
"""

from __future__ import annotations

from urllib.parse import unquote

from exporter.config.webconfig import WebConfig, ssl_context
from exporter.core.logs import get_logger
from exporter.web.httpframing import BodySource, Request, Response, text_response
from exporter.web.httploop import ConnectionLoop, Listener, ServerLimits, parse_listen_address
from exporter.webhooks.service import WebhookService

log = get_logger("exporter.webhooks")

PREFIX = "/webhooks/"
_REASONS = {
    200: "ok",
    202: "accepted",
    400: "bad request",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    411: "length required",
    413: "payload too large",
    415: "unsupported media type: send the event uncompressed",
    429: "too many requests",
    500: "internal error; see the log",
    503: "unavailable; retry later",
}


class WebhookEndpoints:
    """The answers of the webhook listener."""

    def __init__(self, service: WebhookService) -> None:
        self._service = service

    def answer(self, request: Request, body: BodySource) -> Response:
        if request.method != "POST":
            return _answer(405, {"Allow": "POST"})
        service = self._service
        path = request.path
        source = unquote(path[len(PREFIX) :]) if path.startswith(PREFIX) else ""
        if not source or "/" in source or not service.accepts(source):
            return _answer(404)
        # A length declared up front, so the bound is checked before a byte of the body is
        # read. The framing itself (one plain decimal Content-Length, never beside a
        # Transfer-Encoding) was checked as the request was read.
        if request.chunked or request.content_length is None:
            return _answer(411)
        if _compressed(request.headers.get("content-encoding", "")):
            # Refused, not inflated: the signature covers the bytes as sent, and a body inflated
            # here would need a bound of its own on a path any caller on the network can reach.
            refused = service.compressed(source)
            return _answer(refused.status, dict(refused.headers))
        if request.content_length > service.settings.max_body_bytes:
            refused = service.oversized(source)
            return _answer(refused.status, dict(refused.headers))
        data = body.read_body(request.content_length)  # bounded by the request's read deadline
        try:
            answer = service.receive(source, request.headers, data)
        except Exception:
            # A bug says so (log, 500: the platform retries) instead of hanging up unanswered.
            log.exception("webhook request failed", source=source)
            return _answer(500)
        return _answer(answer.status, dict(answer.headers))


def _compressed(content_encoding: str) -> bool:
    codings = (coding.strip().lower() for coding in content_encoding.split(","))
    return any(coding not in ("", "identity") for coding in codings)


def _answer(status: int, headers: dict[str, str] | None = None) -> Response:
    return text_response(status, _REASONS.get(status, ""), headers)


class WebhookListener(Listener):
    def __init__(
        self,
        listen_address: str,
        service: WebhookService,
        web_config: WebConfig | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        tls = web_config.tls_server_config if web_config else None
        loop = ConnectionLoop(
            parse_listen_address(listen_address),
            WebhookEndpoints(service),
            ssl_context=ssl_context(tls) if tls else None,
            limits=limits,
        )
        super().__init__(loop, tls=tls is not None, thread_name="webhooks")
