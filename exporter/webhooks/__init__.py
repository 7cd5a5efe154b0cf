"""Signed webhook events as hints: a verified event names a run, which is then looked up and
counted through the same core as a poll (see `service`). Polling stays the reconciler.

It may import `core`, its settings and the web config from `config`, `providers.SourceSettings`,
and the listeners' loop in `web`; never the `app`, which hands `wiring` a narrow `WebhookHost`."""
