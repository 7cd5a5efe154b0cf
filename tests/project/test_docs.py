"""The provider tables of docs/providers.md are generated from the registry and kept current."""

from __future__ import annotations

from monitoring import docs


def test_the_provider_tables_are_current() -> None:
    assert docs.main(["--check"]) == 0, "run `make docs`"


def test_every_registered_provider_has_a_column_in_every_table() -> None:
    tables = docs.provider_tables()
    from exporter.providers import registry

    # Run statuses, the API facts, and step statuses.
    for provider in registry().values():
        assert tables.count(f" {provider.docs.title} ") == 3, provider.name
