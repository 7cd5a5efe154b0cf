"""Compressed responses: inflated as they arrive and cut off at `max_response_bytes` of decoded
data, with the process's memory bounded by that limit (a gzip bomb served by a real peer)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from exporter.app import Exporter
from exporter.core.errors import PayloadError, ResponseTooLarge
from exporter.providers.bodylimit import ACCEPTED_ENCODINGS, BodyError, BodyTooLarge, BoundedBody
from exporter.providers.client import ApiClient
from exporter.providers.retry import RetryPolicy
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.hostile import HostileServer, Reply, hostile
from tests.series import by_labels, finished
from tests.unit.providers.test_http_client import RecordingObserver

MIB = 1024 * 1024
# What a body may take beyond the limit: one decoded piece, the decoder's window, one network
# chunk, the client's own buffers and the allocator's pages (measured: under 1 MiB).
MEMORY_ALLOWANCE = 4 * MIB
WEBHOOK_SECRET = "whsec-bounds-0123456789abcdef"


def gzip_bomb(inflated: int) -> bytes:
    """`inflated` zero bytes gzipped: about a thousandth of that on the wire."""
    packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    parts = [packer.compress(zeros) for _ in range(inflated // MIB)]
    return b"".join([*parts, packer.flush()])


def json_reply(body: bytes, encoding: str) -> Reply:
    return Reply(
        body=body,
        headers=(("Content-Type", "application/json"), ("Content-Encoding", encoding)),
    )


def client(server: HostileServer, observer: RecordingObserver, limit: int) -> ApiClient:
    return ApiClient(
        source="bombed",
        base_url=server.base_url,
        headers={"Authorization": "Bearer k-bomb-test"},
        timeout=5.0,
        retry=RetryPolicy(max_retries=2, backoff_base=0.01),
        observer=observer,
        max_response_bytes=limit,
    )


# The pure reader ------------------------------------------------------------------------


def feed_all(body: BoundedBody, raw: bytes, step: int) -> bytes:
    for start in range(0, len(raw), step):
        body.feed(raw[start : start + step])
    return body.finish()


PAYLOAD = json.dumps({"data": [{"id": f"run-{i}", "status": "COMPLETED"} for i in range(3000)]})


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def unchanged(data: bytes) -> bytes:
    return data


PACKERS: dict[str | None, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "identity": unchanged,
    None: unchanged,
}


@pytest.mark.parametrize("step", [1, 7, 4096, 10**9])
@pytest.mark.parametrize(
    ("encoding", "pack"),
    [*PACKERS.items(), ("deflate", raw_deflate)],
    ids=["gzip", "x-gzip", "deflate-zlib", "identity", "none", "deflate-raw"],
)
def test_a_body_decodes_whole_in_any_chunking(
    encoding: str | None, pack: Callable[[bytes], bytes], step: int
) -> None:
    data = PAYLOAD.encode()
    assert feed_all(BoundedBody(encoding, len(data)), pack(data), step) == data


def test_gzip_members_one_after_another_are_one_body() -> None:
    raw = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    assert feed_all(BoundedBody("gzip", 100), raw, 3) == b'{"a": 1}'


def test_zeros_after_a_gzip_member_are_padding() -> None:
    raw = gzip.compress(b"{}") + bytes(10)
    assert feed_all(BoundedBody("gzip", 100), raw, 4) == b"{}"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", None])
def test_one_byte_past_the_limit_is_refused_and_the_limit_itself_taken(
    encoding: str | None,
) -> None:
    data = PAYLOAD.encode()
    raw = PACKERS[encoding](data)
    assert feed_all(BoundedBody(encoding, len(data)), raw, 512) == data
    with pytest.raises(BodyTooLarge, match=rf"max_response_bytes \({len(data) - 1} bytes"):
        feed_all(BoundedBody(encoding, len(data) - 1), raw, 512)


def test_a_bomb_is_stopped_within_one_network_chunk_of_the_limit() -> None:
    raw = gzip_bomb(64 * MIB)
    body = BoundedBody("gzip", MIB)
    # Zeros inflate about a thousandfold: the first 64 KiB chunk is far past a MiB.
    with pytest.raises(BodyTooLarge):
        body.feed(raw[:65536])


@pytest.mark.parametrize(
    ("encoding", "raw", "message"),
    [
        ("gzip", gzip.compress(PAYLOAD.encode())[:-6], "ended inside its gzip stream"),
        ("gzip", b"not gzip at all", "not valid gzip data"),
        ("deflate", b"\xff\xfe not deflate", "not valid deflate data"),
        ("br", b"...", r"did not ask for \(br\)"),
        ("gzip, gzip", b"...", "more than one Content-Encoding"),
    ],
    ids=["cut", "garbled-gzip", "garbled-deflate", "brotli", "stacked"],
)
def test_a_body_that_cannot_be_decoded_says_why(encoding: str, raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        feed_all(BoundedBody(encoding, 10 * MIB), raw, 1000)


# Through the client, against a real peer -----------------------------------------------------


def test_the_client_asks_only_for_codings_it_inflates_to_a_bound() -> None:
    with hostile(json_reply(gzip.compress(b'{"ok": true}'), "gzip")) as server:
        observer = RecordingObserver()
        api = client(server, observer, MIB)
        response = api.get_json("/runs", endpoint="list_runs")
        api.close()
    assert response.body == {"ok": True}
    assert observer.requests == [("list_runs", "200")]
    assert ACCEPTED_ENCODINGS == "gzip, deflate"
    assert server.headers[-1]["accept-encoding"] == ACCEPTED_ENCODINGS


def test_a_gzip_bomb_is_recorded_as_too_large_and_names_the_limit() -> None:
    with hostile(json_reply(gzip_bomb(64 * MIB), "gzip")) as server:
        observer = RecordingObserver()
        api = client(server, observer, 2 * MIB)
        with pytest.raises(ResponseTooLarge) as refused:
            api.get_json("/runs", endpoint="list_runs")
        api.close()
    assert isinstance(refused.value, PayloadError)
    assert str(refused.value) == (
        "source 'bombed', list_runs: response larger than max_response_bytes "
        "(2097152 bytes, counted decompressed)"
    )
    assert observer.requests == [("list_runs", "too_large")]
    assert server.requests == 1, "a body too large is not asked for again"


def test_a_garbled_compressed_body_fails_naming_the_coding() -> None:
    with hostile(json_reply(b"\x1f\x8b garbage", "gzip")) as server:
        observer = RecordingObserver()
        api = client(server, observer, MIB)
        with pytest.raises(PayloadError, match="not valid gzip data"):
            api.get_json("/runs", endpoint="list_runs")
        api.close()
    assert observer.requests == [("list_runs", "200")]


# Memory, measured in a process of its own ---------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from exporter.core.errors import ResponseTooLarge
    from exporter.providers.client import ApiClient
    from exporter.providers.retry import RetryPolicy

    class Codes:
        def __init__(self): self.codes = []
        def request(self, endpoint, code, seconds): self.codes.append(code)
        def retry(self, reason): pass
        def response_headers(self, endpoint, headers): pass

    def status_kib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    base_url, limit = sys.argv[1], int(sys.argv[2])
    codes = Codes()
    api = ApiClient(source="bombed", base_url=base_url, headers={}, timeout=10.0,
                    retry=RetryPolicy(max_retries=0), observer=codes, max_response_bytes=limit)
    api.get_json("/warm-up", endpoint="warm_up")  # imports, TLS store, pools: all in place
    try:
        # The peak from here on, over the memory in use now (Linux: the peak is reset), not
        # over the imports' passing peak, which would hide a body smaller than it.
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before, peak = status_kib("VmRSS"), lambda: status_kib("VmHWM")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        api.get_json("/runs", endpoint="list_runs")
        error = None
    except ResponseTooLarge as exc:
        error = str(exc)
    print(json.dumps({"growth_kib": peak() - before, "codes": codes.codes, "error": error}))
    """
)


def test_memory_stays_within_the_limit_while_a_bomb_is_read() -> None:
    """512 MiB inflated from about 512 KiB on the wire: a decoder that inflated each network
    chunk whole would hold some 64 MiB more than the limit at once; this one holds the limit
    and a little more."""
    limit = 32 * MIB
    bomb = json_reply(gzip_bomb(512 * MIB), "gzip")
    with hostile(bomb) as server:
        server.replies.append(json_reply(gzip.compress(b"{}"), "gzip"))  # the warm-up
        measured = subprocess.run(
            [sys.executable, "-c", _MEASURE, server.base_url, str(limit)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    result = json.loads(measured.stdout)
    assert result["codes"] == ["200", "too_large"]
    assert "max_response_bytes (33554432 bytes" in result["error"]
    growth = result["growth_kib"] * 1024
    assert growth <= limit + MEMORY_ALLOWANCE, f"peak RSS grew {growth / MIB:.1f} MiB"
    # The body itself was held (the measure sees it): most of the limit, zeros and all.
    assert growth >= limit // 2, f"peak RSS grew only {growth / MIB:.1f} MiB"


# Webhook bodies: a compressed event is refused, never inflated --------------------------------


@pytest.fixture
def webhook_listener(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> Iterator[tuple[WebhookListener, Exporter]]:
    sim = simulator("plextera", seed=9, arrival_rate_per_min=0)
    exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx", webhook_secret=WEBHOOK_SECRET)],
        webhooks={"max_body_bytes": 4096},
    )
    service = webhook_service(exporter)
    listener = WebhookListener("127.0.0.1:0", service)
    listener.start()
    yield listener, exporter
    listener.stop()
    service.stop()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip"])
def test_a_compressed_webhook_event_is_refused_with_415(
    webhook_listener: tuple[WebhookListener, Exporter], encoding: str
) -> None:
    listener, exporter = webhook_listener
    # Small on the wire, a megabyte inflated: refused before its body is read, signed or not.
    body = gzip.compress(b" " * MIB)
    stamp = str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    answer = httpx.post(
        listener.url("/webhooks/plx"),
        content=body,
        headers={
            "Content-Encoding": encoding,
            "X-Plextera-Signature": f"t={stamp},v1={mac.hexdigest()}",
        },
    )
    assert answer.status_code == 415
    assert answer.headers["accept-encoding"] == "identity"
    received = exporter.registry.get_sample_value(
        "workflow_exporter_webhooks_received_total", {"source": "plx", "result": "invalid"}
    )
    assert received == 1


def test_an_identity_coded_webhook_event_is_taken(
    webhook_listener: tuple[WebhookListener, Exporter],
) -> None:
    listener, _ = webhook_listener
    body = json.dumps({"type": "workflow.run.failed", "data": {"id": "r1"}}).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    answer = httpx.post(
        listener.url("/webhooks/plx"),
        content=body,
        headers={
            "Content-Encoding": "identity",
            "X-Plextera-Signature": f"t={stamp},v1={mac.hexdigest()}",
        },
    )
    assert answer.status_code == 202


# Through the exporter: a simulator serving a bomb ----------------------------------------------


def test_a_source_served_a_gzip_bomb_fails_its_cycle_alone_and_recovers(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    bad = simulator("plextera", seed=61)
    good = simulator("noxus", seed=62)
    for sim in (bad, good):
        sim.world.add_runs(5)
    exporter = exporter_factory(
        [
            source_for(bad, "plextera", name="bad", max_response_bytes=MIB),
            source_for(good, "noxus", name="good"),
        ]
    )
    bad.faults.inject("gzip_bomb", count=1)

    reports = {r.source: r for r in exporter.collect_all()}

    assert not reports["bad"].ok
    assert "response larger than max_response_bytes (1048576 bytes" in (reports["bad"].error or "")
    codes = by_labels(exporter, "workflow_exporter_api_requests_total", "bad", "code")
    assert codes["too_large",] == 1
    assert codes["200",] == 0, "the bomb is not recorded as an answered 200"
    assert reports["good"].ok
    assert bad.faults.injected["gzip_bomb"] == 1
    assert exporter.collect_all()[0].ok, "the next cycle recovers"
    assert finished(exporter, "bad") == bad.world.truth().finished
