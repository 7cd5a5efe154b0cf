"""Service-level objectives as Prometheus rules (pure: no I/O, no network).

From the configured `slos:` (`exporter.config.slos`) come recording rules named after Sloth's
convention (`slo:sli_error:ratio_rate5m`, `slo:objective:ratio`, ...) and multiwindow,
multi-burn-rate alerts that also ask for a minimum of finished runs in their long window, so a
single failure among few runs does not page. `workflow-runs-exporter slo-rules` writes them;
docs/slos.md explains every series and alert.
"""
