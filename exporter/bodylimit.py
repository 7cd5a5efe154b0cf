"""A response body read to a bound on its *decoded* size, decompressed as it arrives. Pure.

A compressed body is small on the wire and may be huge once inflated (a few megabytes of gzip
inflate to gigabytes). A decoder that inflates each network chunk whole holds that chunk's
whole expansion before anyone can count it; here every inflation step is asked for no more
than the room left under the limit, so the memory a body takes is the limit plus the decoder's
working buffers (a 32 KiB window and the unread rest of one network chunk), whatever the
server sends.
"""

from __future__ import annotations

import io
import zlib

# What the client asks for; anything else a server answers with is refused (below).
ACCEPTED_ENCODINGS = "gzip, deflate"


class BodyError(Exception):
    """The body cannot be read as sent. The message names what is wrong, never its content."""


class BodyTooLarge(BodyError):  # noqa: N818 - names the condition
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"response larger than max_response_bytes ({limit} bytes, counted decompressed)"
        )
        self.limit = limit


class _Inflater:
    """One gzip or deflate stream (gzip members one after another are one body, as RFC 1952
    allows), asked each time for no more decoded bytes than there is room for."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        # gzip: its header and trailer checked by zlib. deflate: RFC 9110 means the zlib
        # format, which some servers send raw: the first chunk tells, as browsers and httpx do.
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        # A deflate body's first bytes, until its two-byte zlib header has been taken (or
        # refused, when they are inflated again as raw deflate).
        self._head: bytes | None = b"" if encoding == "deflate" else None
        # Within a stream that has not reached its end: zlib may hold decoded bytes not yet
        # handed out (a match cut short by the bound), and the end must come before the body's.
        self._in_stream = False
        self._pending = b""

    def inflate(self, data: bytes, room: int) -> bytes:
        """Up to `room` + 1 decoded bytes (+1: to see that the body goes past the room); the
        input not inflated yet waits for the next call."""
        self._pending += data
        out = bytearray()
        while self._pending and len(out) <= room:
            out += self._step(room + 1 - len(out))
        return bytes(out)

    def finish(self, room: int) -> bytes:
        """What zlib still holds, up to `room` + 1 bytes; raises if the stream was cut."""
        out = bytearray()
        while (self._in_stream or self._pending) and len(out) <= room:
            chunk = self._step(room + 1 - len(out))
            if not chunk and self._in_stream and not self._pending:
                raise BodyError(f"response body ended inside its {self._encoding} stream")
            out += chunk
        return bytes(out)

    def _step(self, max_length: int) -> bytes:
        data, self._pending = self._pending, b""
        self._in_stream = True
        head = self._head
        if head is not None:
            head += data
            self._head = head if len(head) < 2 else None
        try:
            out = self._zlib.decompress(data, max_length)
        except zlib.error:
            if head is None:
                raise BodyError(f"response body is not valid {self._encoding} data") from None
            self._head = None
            self._wbits = -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(self._wbits)
            try:
                out = self._zlib.decompress(head, max_length)
            except zlib.error:
                raise BodyError("response body is not valid deflate data") from None
        if self._zlib.eof:
            rest = self._zlib.unused_data if self._encoding == "gzip" else b""
            self._zlib = zlib.decompressobj(self._wbits)
            self._in_stream = False
            self._pending = rest
        else:
            self._pending = self._zlib.unconsumed_tail
        return out


class BoundedBody:
    """Feed it the body as it arrives on the wire (`feed`), then take it (`finish`)."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        self.limit = limit
        self._inflater = _inflater_for(content_encoding)
        # BytesIO rather than a list of chunks joined at the end: its buffer becomes the bytes
        # handed back without a copy, so the body is held once, not twice, at its largest.
        self._buffer = io.BytesIO()
        self._size = 0

    def feed(self, raw: bytes) -> None:
        """Raises `BodyTooLarge` as soon as the decoded body passes the limit."""
        room = self.limit - self._size
        self._keep(raw if self._inflater is None else self._inflater.inflate(raw, room))

    def finish(self) -> bytes:
        """The whole body; raises `BodyError` for a compressed stream cut short."""
        if self._inflater is not None:
            self._keep(self._inflater.finish(self.limit - self._size))
        body = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        return body

    def _keep(self, decoded: bytes) -> None:
        if self._size + len(decoded) > self.limit:
            raise BodyTooLarge(self.limit)
        self._size += len(decoded)
        self._buffer.write(decoded)


def _inflater_for(content_encoding: str | None) -> _Inflater | None:
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        # Only one coding is ever asked for (ACCEPTED_ENCODINGS); stacked ones would each need
        # their own bound for no use.
        raise BodyError(f"response has more than one Content-Encoding ({', '.join(codings)})")
    coding = codings[0]
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(f"response has a Content-Encoding the client did not ask for ({coding})")
    return _Inflater("gzip" if coding == "x-gzip" else coding)
