"""The README's provider tables are generated from the registry and kept current."""

from __future__ import annotations

from monitoring import readme


def test_the_readme_provider_tables_are_current() -> None:
    assert readme.main(["--check"]) == 0, "run `make docs`"


def test_every_registered_provider_has_a_column_in_every_table() -> None:
    tables = readme.provider_tables()
    from exporter.providers import registry

    # Run statuses, the API facts, and step statuses.
    for provider in registry().values():
        assert tables.count(f" {provider.docs.title} ") == 3, provider.name
