"""`check`: collect once per source into a throwaway store and say how each API answered.

Exit code 1 when any source failed. Advice on a failure comes from
`exporter.collection.diagnostics`.
"""

from __future__ import annotations

import functools

from exporter.app import Exporter
from exporter.collection.cycle import CycleReport
from exporter.collection.diagnostics import advice
from exporter.config.settings import Config
from exporter.providers import SourceSettings


def check(config: Config) -> int:
    # A throwaway store: checking never moves the real state's cursors.
    exporter = Exporter(config, state_path=":memory:")
    failed = 0
    try:
        for report in exporter.collect_all():
            failed += not report.ok
            print("\n".join(diagnose(exporter, report)))
    finally:
        exporter.shutdown()
    return 1 if failed else 0


def diagnose(exporter: Exporter, report: CycleReport) -> list[str]:
    runtime = exporter.sources[report.source]
    instruments = runtime.collector.instruments
    settings = runtime.settings
    seen = ", ".join(f"{k}={v}" for k, v in sorted(report.seen_by_status.items()))
    state = "ok" if report.ok else "FAILED"
    lines = [
        f"{report.source} ({report.provider}): {state} in {report.seconds:.2f}s; "
        f"runs seen: {seen or 'none'}; active: {report.active}"
    ]
    first = instruments.first_request
    key = instruments.first_key_answer
    if first is None:
        lines.append("  auth: no request answered")
    elif key is None:
        endpoint, code, seconds = first
        lines.append(f"  auth: {code} (first {endpoint} answered HTTP {code} in {seconds:.3f}s)")
    else:
        endpoint, code, seconds = key
        verdict = "refused" if code in ("401", "403") else "ok"
        said = f"{endpoint} answered HTTP {code} in {seconds:.3f}s"
        if key == first:
            lines.append(f"  auth: {verdict} (first {said})")
        else:
            lines.append(
                f"  auth: {verdict} ({said}; the first request, HTTP {first[1]}, "
                "was not about the key)"
            )
    lines += [f"  {line}" for line in runtime.provider_cls.check_lines(settings, report.ok)]
    if runtime.provider_cls.webhook_dialect is not None:
        lines.append(f"  webhooks: {_webhooks(settings)}{_forwarding(exporter, settings)}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(settings.labels.items())) or "none"
    lines.append(f"  counted: {settings.workflows.describe()}; static labels: {labels}")
    headers = instruments.rate_limit_headers
    lines.append(
        "  rate-limit headers: "
        + (", ".join(f"{k}={v}" for k, v in sorted(headers.items())) or "none seen")
    )
    events = runtime.events
    unknown = sorted(events.unknown_statuses)
    lines.append(
        "  unknown statuses: "
        + (", ".join(unknown) + " (map them with status_map)" if unknown else "none")
    )
    facts = runtime.collector.list_facts()
    lines.append("  list: " + ", ".join(f"{fact} {value}" for fact, value in facts.items()))
    for fact, (value, why) in sorted(events.learned_facts.items()):
        lines.append(f"  learned: {fact} {value} ({why})")
    for reason, detail in events.inconsistencies:
        lines.append(f"  inconsistent: {reason}: {detail}")
    if report.error:
        lines.append(f"  error: {report.error}")
        hint = functools.partial(runtime.provider_cls.hint, settings)
        lines.append(f"  advice: {advice(report.failure, hint)}")
    return lines


def _webhooks(settings: SourceSettings) -> str:
    """Whether the source takes signed webhooks, and where its secret is: never the secret."""
    try:
        secret = settings.read_webhook_secret()
    except ValueError as exc:
        return str(exc)
    if secret is None:
        return "off (no webhook_secret)"
    if settings.webhook_secret_file is not None:
        return f"secret set (file {settings.webhook_secret_file})"
    return "secret set (inline)"


def _forwarding(exporter: Exporter, settings: SourceSettings) -> str:
    """With shards: how the source's events reach this replica from the others."""
    shard, webhooks = exporter.shard, exporter.config.app.webhooks
    if not shard.sharded or not (settings.webhook_secret or settings.webhook_secret_file):
        return ""
    if webhooks.peer_url_template is None:
        return (
            "; the other replicas answer its events 404 (set webhooks.peer_url_template to "
            "forward them here)"
        )
    here = webhooks.peer_url(shard.index, settings.name)
    return f"; the other replicas forward its events to {here}"
