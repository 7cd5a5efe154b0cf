"""HTTP/1.1 framing for the exporter's listeners: h11 reads each request and writes each response.

A request is read in two steps. Its head (request line and header fields, up to the first empty
line) is gathered from the socket and checked for what h11 accepts out of leniency but a proxy in
front may read another way: bare LF line endings, obsolete line folding, a `Content-Length` given
twice (even as `5, 5`) or not one decimal number, and `Content-Length` beside `Transfer-Encoding`.
Only then is the head given to a fresh `h11.Connection`, which parses it (and refuses what
HTTP/1.1 itself forbids: no `Host`, bad field names, an unknown transfer coding) and frames the
body, if the endpoint reads one. What arrives past a request stays in this module's buffer until
the next request, so every request's head goes through the same checks, pipelined or not.

Anything refused is a `FramingError`: its listener answers it with the error's status and closes
the connection. After any request whose body was not read whole, the connection closes too, so
a body is never taken for the next request.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

import h11

# The request line and header fields together (h11's own default bound on an incomplete event).
MAX_HEAD_BYTES = 16 * 1024

_HEAD_END = b"\r\n\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")
_OBS_FOLD = re.compile(rb"\r\n[ \t]")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding[ \t]*:", re.IGNORECASE)


class FramingError(Exception):
    """A request this server will not read: answered with `status`, then the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientGoneError(ConnectionError):
    """The client closed its side in the middle of a request."""


def head_problem(head: bytes) -> str | None:
    """What is wrong with a request head (complete or not yet) that h11 would let through; None
    if nothing is."""
    if _BARE_LF.search(head):
        return "a line ends in a bare LF"
    if _OBS_FOLD.search(head):
        return "a header field is folded over two lines"
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) > 1:
        return "Content-Length is given more than once"
    if lengths:
        value = lengths[0].strip(b" \t")
        if not (value.isascii() and value.isdigit()):
            return "Content-Length is not one decimal number"
        if _TRANSFER_ENCODING.search(head):
            return "Content-Length and Transfer-Encoding are both given"
    return None


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    # Lower-case names; a field sent on several lines has its values joined with ", ".
    headers: Mapping[str, str]
    client: str
    # The declared length, or None when there is none (no body, or a chunked one).
    content_length: int | None
    chunked: bool

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # Close the connection once this is sent.
    close: bool = False


def text_response(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, close: bool = False
) -> Response:
    extra = tuple((headers or {}).items())
    return Response(
        status,
        f"{message}\n".encode(),
        (("Content-Type", "text/plain; charset=utf-8"), *extra),
        close,
    )


class BodySource(Protocol):
    def read_body(self, limit: int) -> bytes: ...


class HttpConnection:
    """One client connection: its socket, the bytes received and not yet used, and the h11
    state of the request being served."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.wrapped = False  # TLS handshake done
        self._buffer = bytearray()
        self._h11 = h11.Connection(h11.SERVER)
        self._deadline = 0.0
        self._method = ""

    @property
    def client(self) -> str:
        return str(self.address[0]) if isinstance(self.address, tuple) else str(self.address)

    def wrap(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.wrapped = True

    def has_pending(self) -> bool:
        """Whether the next request has (partly) arrived already."""
        if self._buffer:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        # poll, not select: a server holding a thousand idle connections has descriptors past
        # select's limit of 1024.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def next_request(self, deadline: float) -> Request | None:
        """The next request's head, read whole by `deadline` (a `TimeoutError` if not); None
        when the client closed the connection between requests."""
        self._deadline = deadline
        self._method = ""
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        while True:
            end = self._buffer.find(_HEAD_END)
            head = bytes(self._buffer[: end + len(_HEAD_END)] if end >= 0 else self._buffer)
            problem = head_problem(head)
            if problem is not None:
                raise FramingError(400, problem)
            if len(head) > MAX_HEAD_BYTES:
                raise FramingError(431, "the request line and header fields are too large")
            if end >= 0:
                break
            if not self._receive():
                if self._buffer:
                    raise ClientGoneError("the client closed the connection within a request")
                return None
        del self._buffer[: len(head)]
        self._h11.receive_data(head)
        event = self._next_event()
        if not isinstance(event, h11.Request):
            raise FramingError(400, "no request line")
        if event.http_version not in (b"1.0", b"1.1"):
            raise FramingError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length")
        request = Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=headers,
            client=self.client,
            content_length=int(length) if length is not None else None,
            chunked="transfer-encoding" in headers,
        )
        self._method = request.method
        if request.has_body and request.method != "POST":
            # Refused rather than skipped: a body on a GET is how a request is smuggled past a
            # proxy that reads it as one request where the server would read two.
            raise FramingError(400, f"a {request.method} request carries no body here")
        if not request.has_body:
            self._next_event()  # its end (there is no body): h11 holds the request complete
        return request

    def read_body(self, limit: int) -> bytes:
        """The request's body, by the request's deadline. Over `limit` bytes: a 413."""
        if self._h11.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                if self._buffer or self._receive():
                    self._h11.receive_data(bytes(self._buffer))
                    self._buffer.clear()
                else:
                    raise ClientGoneError("the client closed the connection within a request body")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise FramingError(413, f"the body is larger than {limit} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                # Whatever came after the body belongs to the next request: back to the buffer,
                # where its head is checked like any other.
                self._buffer[:0] = self._h11.trailing_data[0]
                return b"".join(chunks)

    def respond(self, response: Response, *, timeout: float) -> bool:
        """Sends `response` (without its body to a HEAD: the length stays that of the body a GET
        gets); whether the connection may carry another request."""
        headers = [
            *response.headers,
            ("Content-Length", str(len(response.body))),
            ("Date", formatdate(usegmt=True)),
        ]
        if response.close or self._h11.their_state is not h11.DONE:
            # Closing after this answer (asked for, or a body left unread that must not be read
            # as the next request): the client is told so.
            headers.append(("Connection", "close"))
        reason = HTTPStatus(response.status).phrase.encode("ascii")
        head = h11.Response(status_code=response.status, headers=headers, reason=reason)
        data = self._h11.send(head) or b""
        if response.body and self._method != "HEAD":
            data += self._h11.send(h11.Data(data=response.body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        self.sock.settimeout(timeout)
        self.sock.sendall(data)
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    def refuse(self, refused: FramingError, *, timeout: float) -> None:
        """Answers a request that could not be read; the connection is to close after it."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response has begun already: there is no answering any more
        # The reason may quote the request (h11 names a bad line): bounded, never more.
        reason = refused.reason[:200]
        message = f"{HTTPStatus(refused.status).phrase.lower()}: {reason}"
        self.respond(text_response(refused.status, message, close=True), timeout=timeout)

    def _next_event(self) -> Any:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise FramingError(exc.error_status_hint, str(exc)) from None

    def _send(self, event: Any) -> None:
        data = self._h11.send(event)
        if data:
            self.sock.sendall(data)

    def _receive(self) -> bool:
        """More bytes into the buffer, waiting no later than the deadline; False at the end of
        the stream."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete within the read timeout")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)
