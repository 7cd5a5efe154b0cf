"""`POST /webhooks/<source>` on its own listener (`--webhook.listen-address`), so /metrics can
stay internal while the platforms reach this one.

It runs on the metrics server's hardened loop (read deadlines, bounded workers and
connections), with its own handler: a request's body is read only once the source is known and
its declared length is within bounds; nothing else is served.
"""

from __future__ import annotations

from urllib.parse import unquote

from prometheus_client import CollectorRegistry

from exporter.logs import get_logger
from exporter.server import (
    Listener,
    ServerHooks,
    ServerLimits,
    _Handler,
    _Server,
    parse_listen_address,
)
from exporter.webconfig import WebConfig, ssl_context
from exporter.webhooks.service import WebhookService

log = get_logger("exporter.webhooks")

PREFIX = "/webhooks/"
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
_REASONS = {
    200: b"ok\n",
    202: b"accepted\n",
    400: b"bad request\n",
    401: b"unauthorized\n",
    404: b"not found\n",
    405: b"method not allowed\n",
    411: b"length required\n",
    413: b"payload too large\n",
    415: b"unsupported media type: send the event uncompressed\n",
    429: b"too many requests\n",
    500: b"internal error; see the log\n",
}


class _WebhookHandler(_Handler):
    server: _WebhookServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        # A body it may carry is not read: the connection ends rather than read it as a request.
        self.close_connection = True
        self._answer(405, {"Allow": "POST"})

    # Not http.server's 501 page (it names the method back): the same 405 as GET.
    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        # Until the body has been read whole, what follows must not be taken for a request.
        keep_alive = not self.close_connection
        self.close_connection = True
        path = self.path.split("?", 1)[0]
        service = self.server.service
        source = unquote(path[len(PREFIX) :]) if path.startswith(PREFIX) else ""
        if not source or "/" in source or not service.accepts(source):
            self._answer(404)
            return
        # One plain decimal Content-Length and no Transfer-Encoding, or refused: a proxy in front
        # that framed the request another way (`+5`, `5_0` and two lengths are read by int() or
        # by one of them) would see a different request end than this one.
        if self.headers.get_all("Transfer-Encoding"):
            self._answer(411)
            return
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._answer(411)
            return
        if len(lengths) > 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
            self._answer(400)
            return
        length = int(lengths[0])
        if _compressed(self.headers.get_all("Content-Encoding") or []):
            # Refused, not inflated: the signature covers the bytes as sent, and a body inflated
            # here would need a bound of its own on a path any caller on the network can reach.
            answer = service.compressed(source)
            self._answer(answer.status, dict(answer.headers))
            return
        if length > service.settings.max_body_bytes:
            answer = service.oversized(source)
            self._answer(answer.status, dict(answer.headers))
            return
        body = self.rfile.read(length)  # bounded by the request's read deadline
        if len(body) < length:
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            answer = service.receive(source, headers, body)
        except Exception:
            # A bug says so (log, 500: the platform retries) instead of hanging up unanswered.
            log.exception("webhook request failed", source=source)
            self._answer(500)
            return
        self.close_connection = not keep_alive
        self._answer(answer.status, dict(answer.headers))

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._send(status, _REASONS.get(status, b"\n"), {**_TEXT, **(headers or {})})


def _compressed(content_encodings: list[str]) -> bool:
    codings = (c.strip().lower() for value in content_encodings for c in value.split(","))
    return any(coding not in ("", "identity") for coding in codings)


class _WebhookServer(_Server):
    def __init__(
        self,
        address: tuple[str, int],
        service: WebhookService,
        web_config: WebConfig | None,
        limits: ServerLimits | None,
    ) -> None:
        self.service = service
        tls = web_config.tls_server_config if web_config else None
        # The loop's hooks serve /metrics on the other listener; here they stand empty.
        hooks = ServerHooks(registry=CollectorRegistry(), ready=lambda: True, sources=list)
        super().__init__(
            address,
            hooks,
            ssl_context=ssl_context(tls) if tls else None,
            limits=limits,
            handler=_WebhookHandler,
        )


class WebhookListener(Listener):
    def __init__(
        self,
        listen_address: str,
        service: WebhookService,
        web_config: WebConfig | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        httpd = _WebhookServer(parse_listen_address(listen_address), service, web_config, limits)
        tls = web_config is not None and web_config.tls_server_config is not None
        super().__init__(httpd, tls=tls, thread_name="webhooks")
