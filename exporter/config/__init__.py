"""Configuration: the settings models, the config file and web config file readers, the
per-feature settings (webhooks, alerting) and the reload plan. It may import `core`, and of
`providers` only what names a source's settings (`SourceSettings` and the registry that picks a
provider's settings model); never the state, the collection, the rendering or the listeners."""
