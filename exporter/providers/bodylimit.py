"""A response body read to a bound on its *decoded* size, decompressed as it arrives. Pure.

A compressed body is small on the wire and may be huge once inflated (a few megabytes of gzip
inflate to gigabytes). A decoder that inflates each network chunk whole holds that chunk's
whole expansion before anyone can count it; here each inflation step decodes at most PIECE
bytes, counted before the next is made, so the memory a body takes is the limit plus the
decoder's working buffers (one piece, a 32 KiB window, the unread rest of one network chunk),
whatever the server sends.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

# What the client asks for; anything else a server answers with is refused (below).
ACCEPTED_ENCODINGS = "gzip, deflate"
# The most one inflation step decodes: what a body can hold past its limit for a moment.
PIECE = 64 * 1024


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
    allows), inflated a piece at a time: the reader stops taking pieces at its bound, and
    nothing past it is ever inflated."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        # gzip: its header and trailer checked by zlib. deflate: RFC 9110 means the zlib
        # format, which some servers send raw: the first bytes tell, as browsers and httpx do.
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        # A deflate body's first bytes, until its two-byte zlib header has been taken (or
        # refused, when they are inflated again as raw deflate).
        self._head: bytes | None = b"" if encoding == "deflate" else None
        # Within a stream that has not reached its end: zlib may hold decoded bytes not yet
        # handed out (a match cut short by the piece size), and the end must come before the
        # body's.
        self._in_stream = False
        self._pending = b""

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """What `data` (after what earlier input left) decodes to, PIECE bytes at most each."""
        self._pending += data
        while self._pending:
            piece = self._step()
            if piece:
                yield piece

    def rest(self) -> Iterator[bytes]:
        """What zlib still holds once the input has ended; raises if the stream was cut."""
        while self._in_stream or self._pending:
            piece = self._step()
            if not piece and self._in_stream and not self._pending:
                raise BodyError(f"response body ended inside its {self._encoding} stream")
            if piece:
                yield piece

    def _step(self) -> bytes:
        data, self._pending = self._pending, b""
        if not self._in_stream and self._encoding == "gzip":
            # Zeros between or after members are padding, as gzip readers take them.
            data = data.lstrip(b"\0")
            if not data:
                return b""
        self._in_stream = True
        head = self._head
        if head is not None:
            head += data
            self._head = head if len(head) < 2 else None
        try:
            out = self._zlib.decompress(data, PIECE)
        except zlib.error:
            if head is None:
                raise BodyError(f"response body is not valid {self._encoding} data") from None
            self._head = None
            self._wbits = -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(self._wbits)
            try:
                out = self._zlib.decompress(head, PIECE)
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
        """Raises `BodyTooLarge` as soon as the decoded body would pass the limit."""
        if self._inflater is None:
            self._keep(raw)
            return
        for piece in self._inflater.pieces(raw):
            self._keep(piece)

    def finish(self) -> bytes:
        """The whole body; raises `BodyError` for a compressed stream cut short."""
        if self._inflater is not None:
            for piece in self._inflater.rest():
                self._keep(piece)
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
