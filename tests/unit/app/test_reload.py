"""Live reload: SIGHUP and POST /-/reload apply a new config without losing the counts of the
sources that did not change; a bad config is refused and the running one kept."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import SimFactory, source_for
from tests.loopback import EXPORTER, free_port, stop, wait_for
from tests.unit.config.test_settings import ALIAS_BOMB


def finished_sum(text: str, source: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("workflow_runs_finished_total{") and f'source="{source}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def write(path: Path, sources: list[dict[str, Any]], state: Path) -> None:
    path.write_text(
        yaml.safe_dump({"interval": "1s", "state_path": str(state), "sources": sources})
    )


def test_reload_adds_changes_and_removes_sources_and_refuses_a_bad_config(
    simulator: SimFactory, tmp_path: Path
) -> None:
    plextera = simulator("plextera", seed=91)
    noxus = simulator("noxus", seed=92)
    extend = simulator("extend", seed=93)
    for sim in (plextera, noxus, extend):
        sim.world.add_runs(12)
        sim.world.advance(3600)
    config, state = tmp_path / "config.yaml", tmp_path / "state.db"
    keep = source_for(plextera, "plextera", name="keep")
    change = source_for(noxus, "noxus", name="change")
    write(config, [keep, change], state)
    port = free_port()
    proc = subprocess.Popen(
        [
            *EXPORTER,
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        first = wait_for(
            metrics_url,
            lambda r: finished_sum(r.text, "keep") > 0 and finished_sum(r.text, "change") > 0,
            timeout=20,
        )
        kept_before = finished_sum(first.text, "keep")
        keep_requests = len(plextera.requests)

        # SIGHUP: change one source's settings, add one.
        added = source_for(extend, "extend", name="added")
        write(config, [keep, {**change, "page_size": 7}, added], state)
        proc.send_signal(signal.SIGHUP)
        after = wait_for(metrics_url, lambda r: finished_sum(r.text, "added") > 0, timeout=20)
        assert finished_sum(after.text, "keep") >= kept_before, "unchanged counts continue"
        assert finished_sum(after.text, "change") > 0
        time.sleep(1.5)
        assert len(plextera.requests) > keep_requests, "the unchanged source keeps running"
        assert any(r.query.get("size") == "7" for r in noxus.requests), "the change is applied"

        config_text = config.read_text()
        # A bad config is refused with a clear answer; the running sources go on.
        config.write_text(yaml.safe_dump({"sources": [{"name": "x"}]}))
        refused = httpx.post(f"http://127.0.0.1:{port}/-/reload")
        assert refused.status_code == 400
        assert "provider" in refused.text
        assert finished_sum(httpx.get(metrics_url).text, "added") > 0

        # An alias bomb is refused before it is expanded, by SIGHUP as by POST.
        config.write_text(ALIAS_BOMB + config_text)
        proc.send_signal(signal.SIGHUP)
        bombed = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=5)
        assert bombed.status_code == 400
        assert "alias bomb" in bombed.text
        assert finished_sum(httpx.get(metrics_url).text, "added") > 0

        # POST /-/reload: remove one source; its series disappear.
        write(config, [keep, added], state)
        assert httpx.post(f"http://127.0.0.1:{port}/-/reload").status_code == 200
        final = httpx.get(metrics_url).text
        assert 'source="change"' not in final
        assert finished_sum(final, "keep") >= kept_before
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "reload refused" in err
    assert "configuration reloaded" in err
