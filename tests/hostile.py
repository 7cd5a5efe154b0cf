"""A hostile HTTP peer on 127.0.0.1:0, speaking raw bytes over a socket.

It answers whatever it is told (any status, headers, body bytes), or misbehaves the ways a real
server or a man in the middle can: headers or body one byte per interval, a connection accepted
and never answered, a body without end. Every answer stops when the server is stopped, so a test
that fails can never hang on it.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["answer", "drip_headers", "drip_body", "hang", "flood"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    mode: Mode = "answer"
    # Seconds between two bytes of a drip.
    interval: float = 0.1

    def head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} X"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.mode != "flood":
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class HostileServer:
    reply: Reply = field(default_factory=Reply)
    requests: int = 0
    # Answered first, one per request, before `reply` answers every request after them.
    replies: list[Reply] = field(default_factory=list)
    # Each request's headers, names in lower case.
    headers: list[dict[str, str]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileServer:
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer._serve(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="hostile").start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.requests += 1
            self.headers.append(_headers(head))
            reply = self.replies.pop(0) if self.replies else self.reply
            if reply.mode == "hang":
                self._stopped.wait()
            elif reply.mode == "drip_headers":
                self._drip(sock, reply.head() + reply.body, reply.interval)
            elif reply.mode == "drip_body":
                sock.sendall(reply.head())
                self._drip(sock, reply.body, reply.interval)
            elif reply.mode == "flood":
                sock.sendall(reply.head())
                filler = reply.body or b" " * 65536
                while not self._stopped.is_set():
                    sock.sendall(filler)
            else:
                sock.sendall(reply.head() + reply.body)

    def _drip(self, sock: socket.socket, data: bytes, interval: float) -> None:
        for index in range(len(data)):
            sock.sendall(data[index : index + 1])
            if self._stopped.wait(interval):
                return


def _headers(head: bytes) -> dict[str, str]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines)
    }


@contextlib.contextmanager
def hostile(reply: Reply | None = None) -> Iterator[HostileServer]:
    server = HostileServer(reply or Reply()).start()
    try:
        yield server
    finally:
        server.stop()
