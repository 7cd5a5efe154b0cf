"""The landing page (`/`): per source, its collection state, the runs that finished in the last
hour by status and its last failures, plus links to the dashboards and alert rules.

A static page: no script, every value from the APIs HTML-escaped, and nothing that could hold a
key (sources are shown by name; errors pass the log redaction before they get here). The
dashboards and rules are served read-only from the repository's files, by a fixed list of names.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from exporter import __version__
from exporter.core.logs import redact
from exporter.core.model import RunStatus
from exporter.state.recent import RecentFailure

_REPO = Path(__file__).resolve().parents[2]
# URL path -> file; only those that exist are linked and served (an installed package has none).
SHIPPED_FILES: Mapping[str, Path] = {
    "/files/grafana/workflow-runs.json": _REPO / "grafana" / "workflow-runs.json",
    "/files/grafana/exporter-health.json": _REPO / "grafana" / "exporter-health.json",
    "/files/prometheus/workflow-runs-exporter.rules.yml": (
        _REPO / "monitoring" / "prometheus" / "workflow-runs-exporter.rules.yml"
    ),
}
_STATUS_ORDER = [s.value for s in RunStatus]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    provider: str
    up: bool | None  # None: not collected yet
    last_error: str | None
    last_collection: float | None
    active: int
    counted_last_cycle: int
    last_hour: Mapping[str, int] = field(default_factory=dict)  # finished runs by status
    failures: Sequence[RecentFailure] = ()  # newest first


def shipped_file(path: str) -> tuple[bytes, str] | None:
    """The body and content type of a served file, or None."""
    file = SHIPPED_FILES.get(path)
    if file is None or not file.is_file():
        return None
    kind = "application/json" if file.suffix == ".json" else "text/plain"
    return file.read_bytes(), f"{kind}; charset=utf-8"


def _e(value: object) -> str:
    return html.escape(redact(str(value)))


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _finished(at: datetime, now: float) -> str:
    # A provider's clock ahead of ours (or the demo's world, faster than real time) gives times
    # in the future: shown as they are, with no age.
    age = now - at.timestamp()
    stamp = at.astimezone(UTC).strftime("%H:%M:%S")
    return f"{stamp} UTC ({_ago(age)})" if age >= 0 else f"{stamp} UTC"


def _source(s: SourceStatus, now: float) -> str:
    state = "pending" if s.up is None else ("up" if s.up else "down")
    ago = _ago(now - s.last_collection) if s.last_collection else "never"
    statuses = sorted(s.last_hour, key=lambda k: [*_STATUS_ORDER, k].index(k))
    counts = (
        " ".join(
            f'<span class="n {_e(k)}">{_e(k)} <b>{s.last_hour[k]}</b></span>' for k in statuses
        )
        or "none yet"
    )
    failures = "".join(
        f"<tr><td>{_e(f.workflow)}</td><td><code>{_e(f.code)}</code></td>"
        f"<td>{_finished(f.finished_at, now)}</td></tr>"
        for f in s.failures
    )
    recent = (
        "<table><tr><th>last failures: workflow</th><th>code</th><th>finished</th></tr>"
        f"{failures}</table>"
        if failures
        else "<p>no failures seen since the start</p>"
    )
    error = f'<p class="error">last error: {_e(s.last_error)}</p>' if s.last_error else ""
    return f"""<section>
<h2>{_e(s.name)} <small>{_e(s.provider)}</small> <span class="{state}">{state}</span></h2>
<p>last collection {ago} · {s.active} active runs</p>{error}
<p>finished in the last hour: {counts}</p>
{recent}
</section>"""


def render(sources: Sequence[SourceStatus], now: float | None = None) -> str:
    now = time.time() if now is None else now
    files = " · ".join(
        f'<a href="{path}">{path.rsplit("/", 1)[1]}</a>'
        for path, file in SHIPPED_FILES.items()
        if file.is_file()
    )
    shipped = f"<p>Dashboards and alert rules: {files}</p>" if files else ""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>workflow-runs-exporter</title>
<style>
body{{font-family:sans-serif;margin:2em;max-width:60em;color:#222}}
td,th{{padding:.2em .8em;text-align:left}} th{{font-weight:normal;color:#666}}
section{{border-top:1px solid #ddd;margin-top:1em}} h2 small{{color:#777;font-weight:normal}}
.up{{color:#070}}.down,.error{{color:#b00}}.pending{{color:#777}}
.n{{margin-right:1em}}.n.failed b,.n.rejected b{{color:#b00}}.n.succeeded b{{color:#070}}
</style></head>
<body><h1>workflow-runs-exporter {_e(__version__)}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> ·
<a href="/readyz">/readyz</a> · as of {stamp} UTC (reload to refresh)</p>
{shipped}
{"".join(_source(s, now) for s in sources)}
</body></html>
"""
