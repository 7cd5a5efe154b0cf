"""The one path to `/metrics`: the domain metric families rendered from a state snapshot, the
exporter's own self-metrics, static labels on every series, and the classic text and
OpenMetrics writers. It may import `core` and `state`'s snapshot types; never `httpx`, the
providers or their API client."""
