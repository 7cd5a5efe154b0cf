"""Adding a provider is one module plus its simulator: a throwaway sixth provider, written to a
temporary directory and found by the registries' own discovery, is picked up by the contract
tests, the decoder fuzzing, the webhook dialect checks, the chart's provider enum, the alert rules
and dashboards (its steps policy), the provider tables of docs/providers.md (its webhooks too),
and the webhook listener counts a signed event of its own dialect, with no other file of the
project touched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROVIDER = '''
"""Toy: `X-Toy-Key`, page/size pages `{runs, total}`, newest first; signed webhooks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from exporter.core.model import UNSPECIFIED_CODE, Run, RunStatus
from exporter.providers.base import PagedSourceSettings, Provider, ProviderDocs, SourceSettings
from exporter.providers.paging import Page
from exporter.providers.webhooks import (
    Dialect, Event, Signed, found_at, hmac_sha256_hex, id_text, same_signature, signed_timestamp,
)
from exporter.providers.wire import UtcDatetime, WireModel


class ToySettings(PagedSourceSettings):
    provider: str = "toy"
    base_url: str = "https://toy.example"


class ToyDialect:
    """`X-Toy-Signature` = hex HMAC-SHA256 of `<X-Toy-Timestamp>.<raw body>`;
    body `{"id": <event>, "kind": <type>, "run": {"id": ...}}`."""

    name = "toy"
    runs_by_url = False
    run_events = frozenset({"run.finished"})
    signature_doc = "`X-Toy-Signature`: hex HMAC-SHA256 of `<X-Toy-Timestamp>.<raw body>`"

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        stamp = headers.get("x-toy-timestamp", "")
        given = headers.get("x-toy-signature", "").strip().lower()
        when = signed_timestamp(stamp)
        if when is None or not given:
            return None
        expected = hmac_sha256_hex(secret, stamp.strip().encode() + b"." + body)
        return Signed(when, given) if same_signature(expected, given) else None

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event:
        if not isinstance(body, dict):
            return Event(None, None, False, None)
        event_id, kind = id_text(body.get("id")), id_text(body.get("kind"))
        if kind not in self.run_events:
            return Event(event_id, kind, False, None)
        run_id, holder = found_at(body, ("run.id",))
        return Event(event_id, kind, True, run_id, holder)


class ToyRun(WireModel):
    id: str
    state: str
    flow: str
    created: UtcDatetime
    ended: UtcDatetime | None = None


class ToyProvider(Provider[ToySettings]):
    name: ClassVar[str] = "toy"
    settings_model: ClassVar[type[SourceSettings]] = ToySettings
    docs: ClassVar[ProviderDocs] = ProviderDocs(
        title="Toy", auth="`X-Toy-Key`", list="`GET /runs`", one_run="`GET /runs/{id}`",
        incremental_by="`created`", active_reread="lookups", code_label="`unspecified`",
        duration="ended - created", progress="none",
    )
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "new": RunStatus.QUEUED, "busy": RunStatus.RUNNING, "ok": RunStatus.SUCCEEDED,
        "bad": RunStatus.FAILED, "off": RunStatus.CANCELLED,
    }
    webhook_dialect: ClassVar[Dialect | None] = ToyDialect()
    # Were its runs to carry steps, only failed ones would: the step failure ratio leaves it out.
    steps_of_failed_runs_only: ClassVar[bool] = True

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        return {"X-Toy-Key": api_key}

    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        listed = self.listed_items(body, "runs")
        runs = list(self.parse_items(listed, self._to_run))
        total = body.get("total") if isinstance(body.get("total"), int) else None
        return Page(runs, len(listed), total_items=total, ids=tuple(r.id for r in runs))

    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        def fetch(number: int, size: int) -> Page[Run]:
            response = self.get_page("/runs", number=number, params={"page": number, "size": size})
            return self.decode_page(response.body, response.headers)

        for page in self.paged_list(fetch, "all", time_of=lambda run: run.cursor_time).pages(floor):
            yield from page.items

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        return self.fetch_one(f"/runs/{run_id}", self._to_run)

    def _to_run(self, item: Any) -> Run:
        wire = ToyRun.model_validate(item)
        status = self.map_status(wire.state)
        return Run(
            id=wire.id, workflow_id=wire.flow, workflow_name=wire.flow, status=status,
            native_status=wire.state, created_at=wire.created, cursor_time=wire.created,
            finished_at=wire.ended,
            error_code=UNSPECIFIED_CODE if status is RunStatus.FAILED else None,
        )
'''

SIMULATOR = '''
"""Toy's API, for the throwaway-provider test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from exporter.core.model import RunStatus
from exporter.simulator.exchange import Request, Response
from exporter.simulator.records import SimRun, Vocabulary
from exporter.simulator.server import SimulatorServer


class ToySimulator(SimulatorServer):
    provider: ClassVar[str] = "toy"
    vocabulary = Vocabulary(
        queued="new", running="busy", succeeded="ok", failed="bad", cancelled="off",
        error_codes=False,
        table={"new": RunStatus.QUEUED, "busy": RunStatus.RUNNING, "ok": RunStatus.SUCCEEDED,
               "bad": RunStatus.FAILED, "off": RunStatus.CANCELLED},
    )

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("x-toy-key") == self.api_key

    def is_list(self, request: Request) -> bool:
        return request.path == "/runs"

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        return body.get("runs") if isinstance(body, dict) else None

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"error": message})

    def route(self, request: Request) -> Response:
        with self.world.lock:
            if request.path == "/runs":
                page = int(request.query.get("page", "1"))
                size = int(request.query.get("size", "10"))
                if page < 1:
                    return self.error(400, "", "page starts at 1")
                runs = self.world.runs_newest_first()
                chunk = [self.render(r) for r in runs[(page - 1) * size : page * size]]
                return Response(body={"runs": chunk, "total": len(runs)})
            run = self.world.runs.get(request.path.rsplit("/", 1)[-1])
            return Response(body=self.render(run)) if run else self.error(404, "", "no such run")

    def render(self, run: SimRun) -> dict[str, Any]:
        return {
            "id": run.id, "state": run.native_status, "flow": run.workflow.name,
            "created": self.stamp(run.created_at), "ended": self.stamp(run.finished_at),
        }
'''

PLUGIN = '''
"""Puts the toy modules where discovery looks (beside the project's own), as a new file would."""

import sys
from pathlib import Path

import exporter.providers
import exporter.simulator
from exporter.core.plugins import discover
from exporter.providers.base import Provider
from exporter.simulator.server import SimulatorServer

HERE = Path(__file__).resolve().parent
exporter.providers.__path__.append(str(HERE / "providers"))
exporter.simulator.__path__.append(str(HERE / "simulator"))
exporter.providers.registry.cache_clear()
exporter.simulator.SIMULATORS.update(
    discover("exporter.simulator", exporter.simulator.__path__, SimulatorServer, "provider")
)
assert "toy" in exporter.providers.registry(), "discovery did not find the toy provider"
'''

CHECKS = '''
"""What the chart, the rules, the dashboards, the provider docs and the webhook listener make of
the registry, with the toy provider in it."""

import hashlib
import hmac
import json
import time
from collections import Counter

import httpx

from exporter.app import Exporter
from exporter.config.settings import config_from_data
from exporter.simulator import SIMULATORS
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.wiring import webhook_service
from monitoring import chart, dashboards, docs, rules
from tests.conftest import source_for
from tests.series import finished

SECRET = "whsec-toy-0123456789abcdef"
LEFT_OUT = 'provider!~"extend|toy"'


def test_the_chart_accepts_the_new_provider() -> None:
    schema = json.loads(chart.values_schema())
    assert "toy" in schema["properties"]["sources"]["items"]["properties"]["provider"]["enum"]


def test_the_provider_tables_show_the_new_provider() -> None:
    tables = docs.provider_tables()
    assert tables.count(" Toy ") == 3  # run statuses, API facts, step statuses (none)
    assert "`ok`" in tables
    assert "HMAC-SHA256 of `<X-Toy-Timestamp>.<raw body>`" in tables
    assert "`run.finished`" in tables


def test_the_step_failure_ratio_leaves_the_new_provider_out() -> None:
    groups = rules.dump_groups(rules.load_thresholds())
    assert groups.count(LEFT_OUT) == 3  # failed, ran, and the minimum of ran
    queries = [q for _, q in dashboards.panel_queries(dashboards.boards()["workflow-runs.json"])]
    assert sum(q.count(LEFT_OUT) for q in queries) == 2  # the ratio panel's failed and ran


def test_a_signed_event_of_the_new_dialect_is_counted(tmp_path) -> None:
    sim = SIMULATORS["toy"](seed=3, arrival_rate_per_min=0, enforce_rate_limit=False)
    sim.start()
    config = config_from_data(
        {
            "state_path": str(tmp_path / "state.db"),
            "new_series_hold": "0s",
            "sources": [source_for(sim, "toy", name="toy1", webhook_secret=SECRET)],
        },
        environ={},
    )
    exporter = Exporter(config)
    exporter.collect_all()
    before = finished(exporter, "toy1")
    service = webhook_service(exporter)
    listener = WebhookListener("127.0.0.1:0", service)
    listener.start()
    try:
        sim.world.add_workflow("Hinted")
        (run,) = sim.world.add_runs(1, workflow="Hinted", native_status="bad")
        body = json.dumps({"id": "evt-1", "kind": "run.finished", "run": {"id": run.id}}).encode()
        stamp = str(int(time.time()))
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        url = listener.url("/webhooks/toy1")
        unsigned = httpx.post(url, content=body, headers={"X-Toy-Timestamp": stamp})
        assert unsigned.status_code == 401
        headers = {"X-Toy-Timestamp": stamp, "X-Toy-Signature": mac}
        assert httpx.post(url, content=body, headers=headers).status_code == 202
        deadline = time.monotonic() + 10
        expected = before + Counter({("Hinted", "failed"): 1})
        while finished(exporter, "toy1") != expected and time.monotonic() < deadline:
            time.sleep(0.02)
        # Counted by the hint alone: no poll ran since the run was added.
        assert finished(exporter, "toy1") == expected
    finally:
        listener.stop()
        service.stop()
        exporter.shutdown()
        sim.stop()
'''


@pytest.mark.timeout(600)
def test_a_sixth_provider_is_one_module_plus_its_simulator(tmp_path: Path) -> None:
    (tmp_path / "providers").mkdir()
    (tmp_path / "simulator").mkdir()
    (tmp_path / "providers" / "toy.py").write_text(textwrap.dedent(PROVIDER))
    (tmp_path / "simulator" / "toy.py").write_text(textwrap.dedent(SIMULATOR))
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "test_toy_checks.py").write_text(textwrap.dedent(CHECKS))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "toy_plugin",
            "-p",
            "no:cacheprovider",
            "-rA",
            "--rootdir",
            str(ROOT),
            "-k",
            "toy or Toy",
            str(ROOT / "tests" / "unit" / "providers" / "test_contract.py"),
            str(ROOT / "tests" / "unit" / "providers" / "test_fuzz_parsers.py"),
            str(ROOT / "tests" / "unit" / "webhooks" / "test_webhook_verify.py"),
            str(tmp_path / "test_toy_checks.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # Every contract test and every fuzz test ran for the toy provider, and passed.
    assert "failed" not in output.splitlines()[-1], output[-2000:]
    passed = int(output.splitlines()[-1].split(" passed")[0].split()[-1])
    contract = sum(
        1
        for line in (ROOT / "tests" / "unit" / "providers" / "test_contract.py")
        .read_text()
        .splitlines()
        if line.startswith("def test_") and "provider" in line
    )
    checks = [line for line in CHECKS.splitlines() if line.startswith("def test_")]
    assert passed >= contract + len(checks) + 1, output[-2000:]
    # The toy's own checks, and the shared dialect check for it, each ran and passed.
    ran = {line.split("::")[-1] for line in output.splitlines() if line.startswith("PASSED ")}
    for line in checks:
        assert line.split("(")[0].removeprefix("def ") in ran, output[-2000:]
    assert "test_a_provider_with_a_dialect_takes_a_webhook_secret_and_only_then[toy]" in ran
