"""The HTTP side of a simulator: reads a request off the socket, hands it to the
`SimulatorServer` (API and `/_sim/` control), writes the answer, and acts out the faults that
live on the connection itself (reset, drip, endless, gzip bomb)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from exporter.simulator.control import answer_control
from exporter.simulator.exchange import Request, Response
from exporter.simulator.faults import Fault

if TYPE_CHECKING:
    from exporter.simulator.server import SimulatorServer


class SimulatorRequestHandler(BaseHTTPRequestHandler):
    server: SimulatorHttpServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (40 ms on Linux loopback), which a real API does not
    # make a client wait, and which would dwarf what a client does with the answer.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        parts = urlsplit(self.path)
        if parts.path.startswith("/_sim/"):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                self._write(Response(400, {"detail": "control body is not JSON"}))
                return
            self._write(answer_control(sim, method, parts.path, payload))
            return
        prefix = sim.path_prefix
        if prefix and not parts.path.startswith(prefix):
            self._write(sim.error(404, "NOT_FOUND", "no such path"))
            return
        request = Request(
            method=method,
            path=parts.path[len(prefix) :] or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        outcome = sim.handle(request)
        if isinstance(outcome, Fault):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._stream_fault(outcome)
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(outcome)

    def _stream_fault(self, fault: Fault) -> None:
        """drip: a valid-looking body one byte at a time; endless: megabytes without end;
        gzip_bomb: `inflated` bytes (2 GiB by default) of gzipped zeros, a thousandth of that on
        the wire, made as they are sent. Each stops when the client hangs up (or after a bound,
        so a test can never hang)."""
        if fault.kind == "reset":
            return
        if fault.kind == "gzip_bomb":
            self._gzip_bomb(int(fault.params.get("inflated", 2 * 1024**3)))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if fault.kind == "drip":
            self.send_header("Content-Length", "100000")
        self.end_headers()
        interval = float(fault.params.get("interval", 0.2))
        deadline = time.monotonic() + float(fault.params.get("max_seconds", 30))
        chunk = b"[" + b"0," * 32768
        while time.monotonic() < deadline:
            if fault.kind == "drip":
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(interval)
            else:
                self.wfile.write(chunk)

    def _gzip_bomb(self, inflated: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
        zeros = bytes(1024 * 1024)
        for _ in range(inflated // len(zeros)):
            self.wfile.write(packer.compress(zeros))
        self.wfile.write(packer.flush())

    def _write(self, response: Response) -> None:
        if isinstance(response.body, bytes):
            raw = response.body
        else:
            raw = json.dumps(response.body).encode()
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


class SimulatorHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: SimulatorServer) -> None:
        self.simulator = simulator
        super().__init__(address, SimulatorRequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up mid-answer (killed, timed out) is part of the game
