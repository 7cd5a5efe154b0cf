"""The exporter's own HTTP listeners: the strictly framed request loop, the `/metrics` server
with its landing page, and `/healthz` / `/readyz`. It may import `core`, `config` (web config),
`state` (recent runs), `exposition` (formats) and `providers`' settings types."""
