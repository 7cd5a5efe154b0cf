"""Configuration: YAML with `${VAR}`, environment overrides, and one exact line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.config.configfile import (
    apply_env_overrides,
    expand_tree,
    expand_variables,
    format_errors,
)
from exporter.config.settings import config_from_data, load_config
from exporter.core.errors import ConfigError
from exporter.providers import registry
from exporter.providers.noxus import NoxusSettings
from exporter.providers.plextera import PlexteraSettings

SECRET = "sk-live-7f3a9c1e-do-not-print"
KNOWN_PROVIDERS = ", ".join(registry())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value.problems


def data_problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_data(data, environ or {})
    return caught.value.problems


def source(name: str = "plextera-prod", provider: str = "plextera", **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider, "api_key": SECRET, **extra}


# A valid file ----------------------------------------------------------------------------


VALID = """
    interval: 1m
    state_path: ${STATE_DIR:-/var/lib/exporter}/state$$1.db
    buckets:
      duration: [1, 10, 100]
    sources:
      - name: plextera-prod
        provider: plextera
        api_key: ${PLEXTERA_API_KEY}
        page_size: 50
      - name: noxus
        provider: noxus
        api_key: ${NOXUS_API_KEY}
        base_url: ${NOXUS_URL:-https://noxus.internal.example}
        interval: 90s
"""


def test_valid_config_with_plextera_and_noxus(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID)
    env = {"PLEXTERA_API_KEY": "pk-123", "NOXUS_API_KEY": "nk-456"}

    config = load_config(path, env)

    assert config.app.interval == timedelta(minutes=1)
    assert config.app.state_path == Path("/var/lib/exporter/state$1.db")
    assert config.app.buckets.duration == (1, 10, 100)
    plextera, noxus = config.sources
    assert isinstance(plextera, PlexteraSettings)
    assert isinstance(noxus, NoxusSettings)
    assert plextera.read_api_key() == "pk-123"
    assert plextera.page_size == 50
    assert plextera.base_url == "https://api.plextera.com/api/public/v1"
    assert noxus.read_api_key() == "nk-456"
    assert noxus.base_url == "https://noxus.internal.example"
    assert config.interval_for(plextera) == timedelta(minutes=1)
    assert config.interval_for(noxus) == timedelta(seconds=90)


def test_set_variable_beats_its_default(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID)
    env = {
        "PLEXTERA_API_KEY": "pk",
        "NOXUS_API_KEY": "nk",
        "NOXUS_URL": "http://127.0.0.1:9000/",
        "STATE_DIR": "/data",
    }
    config = load_config(path, env)
    assert config.sources[1].base_url == "http://127.0.0.1:9000"
    assert config.app.state_path == Path("/data/state$1.db")


def test_api_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  from-file\n", encoding="utf-8")
    config = config_from_data(
        {"sources": [{"name": "p", "provider": "plextera", "api_key_file": str(key_file)}]}, {}
    )
    assert config.sources[0].read_api_key() == "from-file"


def test_expand_variables() -> None:
    text, problems = expand_variables(
        "a: ${A}\nb: ${B:-fallback}\nc: ${C:-}\nd: $$HOME $${A}\ne: $x", {"A": "one"}
    )
    assert text == "a: one\nb: fallback\nc: \nd: $HOME ${A}\ne: $x"
    assert problems == []


def test_expand_tree_names_the_field_of_an_unset_variable() -> None:
    _, problems = expand_tree(
        {"a": 1, "b": "${MISSING}", "sources": [{"api_key": "${ALSO_MISSING}"}]}, {}
    )
    assert problems == [
        "b: environment variable MISSING is not set",
        "sources[0].api_key: environment variable ALSO_MISSING is not set",
    ]


def test_expanded_values_stay_data_and_comments_need_no_variables(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        # api_key: ${OLD_KEY_NOBODY_SET}
        sources:
          - name: p
            provider: plextera
            api_key: ${KEY}
        """,
    )
    config = load_config(path, {"KEY": "abc #def: ghi"})
    assert config.sources[0].read_api_key() == "abc #def: ghi"


def test_empty_variable_counts_as_set() -> None:
    text, problems = expand_variables("a: ${A:-default}", {"A": ""})
    assert (text, problems) == ("a: ", [])


# Environment overrides -------------------------------------------------------------------


def test_env_overrides_a_top_level_field_and_a_source_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID)
    env = {
        "PLEXTERA_API_KEY": "pk",
        "NOXUS_API_KEY": "nk",
        "WORKFLOW_EXPORTER_INTERVAL": "5m",
        "WORKFLOW_EXPORTER_SOURCES__0__PAGE_SIZE": "7",
        "WORKFLOW_EXPORTER_SOURCES__1__MAX_WORKFLOWS": "12",
    }
    config = load_config(path, env)
    assert config.app.interval == timedelta(minutes=5)
    assert config.sources[0].page_size == 7
    assert config.sources[1].max_workflows == 12
    # Untouched fields keep the file's values.
    assert config.sources[1].interval == timedelta(seconds=90)


def test_env_override_values_are_yaml_scalars() -> None:
    data: dict[str, Any] = {"sources": [{"name": "a"}]}
    problems = apply_env_overrides(
        data,
        {
            "WORKFLOW_EXPORTER_BUCKETS__DURATION": "[1, 5, 30]",
            "WORKFLOW_EXPORTER_SOURCES__0__RATE_LIMIT": "2.5",
            "WORKFLOW_EXPORTER_SOURCES__0__ENABLED": "true",
            "WORKFLOW_EXPORTER_SOURCES__0__API_KEY": "",
            "OTHER_PROGRAM_INTERVAL": "1h",
        },
    )
    assert problems == []
    assert data == {
        "buckets": {"duration": [1, 5, 30]},
        "sources": [{"name": "a", "rate_limit": 2.5, "enabled": True, "api_key": ""}],
    }


def test_env_override_of_a_missing_list_item_is_a_problem() -> None:
    problems = data_problems(
        {"sources": [source()]}, {"WORKFLOW_EXPORTER_SOURCES__3__PAGE_SIZE": "7"}
    )
    assert problems == ["WORKFLOW_EXPORTER_SOURCES__3__PAGE_SIZE: no list item '3' at sources"]


def test_env_override_below_a_scalar_is_a_problem() -> None:
    problems = apply_env_overrides({"interval": "30s"}, {"WORKFLOW_EXPORTER_INTERVAL__X": "1"})
    assert problems == [
        "WORKFLOW_EXPORTER_INTERVAL__X: cannot set interval.x: interval is not a mapping"
    ]


def test_env_override_can_supply_a_missing_key() -> None:
    data: dict[str, Any] = {"sources": [{"name": "p", "provider": "plextera"}]}
    config = config_from_data(data, {"WORKFLOW_EXPORTER_SOURCES__0__API_KEY": "from-env"})
    assert config.sources[0].read_api_key() == "from-env"


# Bad configs, one exact line each --------------------------------------------------------


def test_missing_api_key() -> None:
    problems = data_problems(
        {"sources": [source(), {"name": "noxus", "provider": "noxus"}]},
    )
    assert problems == ["sources[1].api_key: field required (or set api_key_file)"]


def test_both_api_key_and_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k", encoding="utf-8")
    problems = data_problems({"sources": [source(api_key_file=str(key_file))]})
    assert problems == ["sources[0].api_key_file: api_key and api_key_file are mutually exclusive"]


def test_unreadable_api_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    problems = data_problems(
        {"sources": [{"name": "p", "provider": "plextera", "api_key_file": str(missing)}]}
    )
    assert problems == [
        f"sources[0].api_key_file: api_key_file {str(missing)!r}: cannot read "
        "(No such file or directory)"
    ]


def test_empty_api_key_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    problems = data_problems(
        {"sources": [{"name": "p", "provider": "plextera", "api_key_file": str(empty)}]}
    )
    assert problems == ["sources[0].api_key_file: api key is empty"]


def test_key_file_problem_names_the_source_by_its_own_position(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    problems = data_problems(
        {
            "sources": [
                source(provider="nope"),
                {"name": "n", "provider": "noxus", "api_key_file": str(missing)},
            ]
        }
    )
    assert problems == [
        f"sources[0].provider: unknown provider 'nope' (one of: {KNOWN_PROVIDERS})",
        f"sources[1].api_key_file: api_key_file {str(missing)!r}: cannot read "
        "(No such file or directory)",
    ]


def test_unknown_provider() -> None:
    problems = data_problems({"sources": [source(provider="plexterra")]})
    assert problems == [
        f"sources[0].provider: unknown provider 'plexterra' (one of: {KNOWN_PROVIDERS})"
    ]


def test_missing_provider() -> None:
    problems = data_problems({"sources": [{"name": "p", "api_key": SECRET}]})
    assert problems == [f"sources[0].provider: field required (one of: {KNOWN_PROVIDERS})"]


def test_unknown_fields_are_typos() -> None:
    assert data_problems({"sources": [source(page_sise=10)]}) == [
        "sources[0].page_sise: unknown setting (check the spelling)"
    ]
    assert data_problems({"intervall": "1m", "sources": [source()]}) == [
        "intervall: unknown setting (check the spelling)"
    ]


def test_invalid_duration() -> None:
    assert data_problems({"interval": "5 minutes", "sources": [source()]}) == [
        "interval: invalid duration '5 minutes': use a number with a unit, e.g. 30s, 5m, 1h"
    ]
    assert data_problems({"sources": [source(timeout="soon")]}) == [
        "sources[0].timeout: invalid duration 'soon': use a number with a unit, e.g. 30s, 5m, 1h"
    ]


def test_bad_base_url() -> None:
    problems = data_problems({"sources": [source(base_url="ftp://example.com")]})
    assert problems == ["sources[0].base_url: must be an http:// or https:// URL"]


def test_out_of_range_number() -> None:
    problems = data_problems({"sources": [source(page_size=0)]})
    assert problems == ["sources[0].page_size: input should be greater than or equal to 1"]


def test_retention_must_exceed_overlap() -> None:
    problems = data_problems({"sources": [source(overlap="2h", retention="1h")]})
    assert problems == ["sources[0].retention: must be longer than overlap"]


def test_duplicate_source_names() -> None:
    problems = data_problems(
        {"sources": [source("prod"), source("prod", "noxus"), source("other")]}
    )
    assert problems == ["sources: the name 'prod' is used more than once"]


def test_unset_variable(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        state_path: ${STATE_DIR}/state.db
        sources:
          - name: p
            provider: plextera
            api_key: k
        """,
    )
    assert problems_of(path) == ["state_path: environment variable STATE_DIR is not set"]


def test_invalid_yaml_does_not_echo_the_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
        sources:
          - name: p
            provider: plextera
            api_key: "{SECRET}
          - name: q
        """,
    )
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith("config.file: invalid YAML at line ")
    assert SECRET not in problems[0]
    assert "api_key" not in problems[0]


def test_a_variable_holding_yaml_syntax_is_taken_verbatim(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        sources:
          - name: p
            provider: plextera
            api_key: ${KEY}
        """,
    )
    config = load_config(path, {"KEY": f"{SECRET}: [oops"})
    assert config.sources[0].read_api_key() == f"{SECRET}: [oops"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path, text)
    assert problems_of(path) == ["config.file: the top level must be a mapping of settings"]


def test_no_sources(tmp_path: Path) -> None:
    assert problems_of(write_config(tmp_path, "interval: 30s\n")) == ["sources: field required"]
    assert problems_of(write_config(tmp_path, "sources: []\n")) == [
        "sources: list should have at least 1 item after validation, not 0"
    ]
    assert problems_of(write_config(tmp_path, "")) == ["sources: field required"]


def test_top_level_and_source_problems_are_reported_together() -> None:
    problems = data_problems(
        {"interval": "often", "jitter_ratio": 2, "sources": [source(base_url="x")]}
    )
    assert problems == [
        "interval: invalid duration 'often': use a number with a unit, e.g. 30s, 5m, 1h",
        "jitter_ratio: input should be less than or equal to 0.5",
        "sources[0].base_url: must be an http:// or https:// URL",
    ]


def test_setting_name_that_is_not_a_string(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        1: x
        sources:
          - name: p
            provider: plextera
            api_key: k
        """,
    )
    assert problems_of(path) == ["1: unknown setting (check the spelling)"]


def test_source_that_is_not_a_mapping() -> None:
    assert data_problems({"sources": ["plextera"]}) == [
        "sources[0]: input should be a valid dictionary"
    ]


_NOT_INCREASING = "buckets must be positive and strictly increasing"


@pytest.mark.parametrize(
    ("buckets", "problem"),
    [
        ({"duration": [5, 1]}, f"buckets.duration: {_NOT_INCREASING}"),
        ({"duration": [1, 1]}, f"buckets.duration: {_NOT_INCREASING}"),
        ({"queue_wait": [0, 1]}, f"buckets.queue_wait: {_NOT_INCREASING}"),
        ({"queue_wait": []}, "buckets.queue_wait: needs at least one bucket"),
        ({"latency": [1]}, "buckets.latency: unknown setting (check the spelling)"),
    ],
)
def test_bad_buckets(buckets: dict[str, list[float]], problem: str) -> None:
    assert data_problems({"buckets": buckets, "sources": [source()]}) == [problem]


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, {})
    assert caught.value.problems == [
        f"config.file: cannot read {str(missing)!r}: No such file or directory"
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(None, {})
    assert caught.value.problems == ["config.file: no configuration file given (--config.file)"]


def test_every_problem_is_reported_at_once() -> None:
    problems = data_problems(
        {
            "sources": [
                source("a", base_url="nope"),
                {"name": "b", "provider": "noxus"},
                source("c", provider="acme"),
            ]
        }
    )
    assert problems == [
        "sources[0].base_url: must be an http:// or https:// URL",
        "sources[1].api_key: field required (or set api_key_file)",
        f"sources[2].provider: unknown provider 'acme' (one of: {KNOWN_PROVIDERS})",
    ]


def test_format_errors_builds_paths_and_lowercases_messages() -> None:
    with pytest.raises(ValidationError) as caught:
        PlexteraSettings.model_validate(
            {"name": "p", "page_size": "many", "status_map": {"X": "nope"}}
        )
    lines = format_errors(caught.value, prefix="sources[3]")
    assert lines[0] == (
        "sources[3].page_size: input should be a valid integer, unable to parse string as an "
        "integer"
    )
    assert lines[1].startswith("sources[3].status_map.X: input should be ")
    assert len(lines) == 2


# Secrets never in messages ---------------------------------------------------------------


def test_api_key_never_appears_in_error_messages(tmp_path: Path) -> None:
    bad_source = source(
        "bad name!",
        base_url="not-a-url",
        interval="sometimes",
        page_size="lots",
        status_map={"X": "nope"},
        colour="blue",
    )
    problems = data_problems({"sources": [bad_source, source("ok", extra_thing=SECRET)]})
    assert len(problems) >= 6
    for problem in problems:
        assert SECRET not in problem
    # The top-level model fails too when `sources` is not a list; the key is in that input.
    for data in (
        {"sources": {"name": "p", "provider": "plextera", "api_key": SECRET}},
        {"interval": "x", "sources": [source()]},
    ):
        with pytest.raises(ConfigError) as caught:
            config_from_data(data, {})
        assert SECRET not in str(caught.value)
        assert SECRET not in repr(caught.value)


def test_api_key_from_the_environment_never_appears_in_error_messages(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        sources:
          - name: p
            provider: plextera
            api_key: ${KEY}
            base_url: nowhere
            page_size: -1
        """,
    )
    for problem in problems_of(path, {"KEY": SECRET}):
        assert SECRET not in problem


def test_cli_reports_each_problem_on_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
        interval: often
        sources:
          - name: plextera-prod
            provider: plextera
            api_key: {SECRET}
            base_url: ftp://x
          - name: noxus
            provider: noxus
        """,
    )
    exe = Path(sys.executable).parent / "workflow-runs-exporter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_EXPORTER_")}
    result = subprocess.run(
        [str(exe), "run", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        "config error: interval: invalid duration 'often': use a number with a unit, e.g. 30s, "
        "5m, 1h",
        "config error: sources[0].base_url: must be an http:// or https:// URL",
        "config error: sources[1].api_key: field required (or set api_key_file)",
    ]


# The alerting agent's section ------------------------------------------------------------


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        ({}, "alerting.alertmanagers: field required"),
        ({"alertmanagers": []}, "alerting.alertmanagers: list at least one Alertmanager"),
        ({"alertmanagers": [{"url": "alertmanager:9093"}]}, "must be an http:// or https:// URL"),
        (
            {"alertmanagers": [{"url": "http://user:pw@am:9093"}]},
            "credentials in the URL would reach logs",
        ),
        (
            {"alertmanagers": [{"url": "http://am:9093"}, {"url": "http://am:9093/"}]},
            "http://am:9093 is listed twice",
        ),
        (
            {"alertmanagers": [{"url": "http://am", "username": "u", "bearer_token": "t"}]},
            "give basic auth or a bearer token, not both",
        ),
        (
            {"alertmanagers": [{"url": "http://am"}], "workflows": "(unclosed"},
            "alerting.workflows: not a regular expression",
        ),
        (
            {"alertmanagers": [{"url": "http://am"}], "dashboard_url": "https://g/{runid}"},
            "only {source}, {workflow} and {run_id} can be filled in",
        ),
        (
            {"alertmanagers": [{"url": "http://am"}], "stuck": {"after": "soon"}},
            "alerting.stuck.after",
        ),
        (
            {"alertmanagers": [{"url": "http://am"}], "failed": {"statuses": ["exploded"]}},
            "alerting.failed.statuses[0]: input should be 'queued'",
        ),
        ({"alertmanagers": [{"url": "http://am"}], "max_per_minute": 0}, "max_per_minute"),
        ({"alertmanagers": [{"url": "http://am"}], "severity": "page"}, "alerting.severity"),
    ],
)
def test_alerting_problems_name_the_field(alerting: dict[str, Any], expected: str) -> None:
    problems = data_problems({"sources": [source()], "alerting": alerting})
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_alerting_secrets_never_appear_in_problems() -> None:
    problems = data_problems(
        {
            "sources": [source()],
            "alerting": {
                "alertmanagers": [{"url": "http://am", "bearer_token": SECRET, "password": SECRET}]
            },
        }
    )
    assert problems
    assert all(SECRET not in p for p in problems)


# A "billion laughs" of 396 bytes: nine levels of nine aliases, 9**9 strings once expanded.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    path = write_config(tmp_path, ALIAS_BOMB + "sources: []\n")
    started = time.monotonic()
    assert problems_of(path) == [
        "config.file: refused: aliases expand to more than 100000 values at line 6, column 4 "
        "(an alias bomb?)"
    ]
    assert time.monotonic() - started < 1


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "loop: &loop [1, *loop]\nsources: []\n")
    assert problems_of(path) == [
        "config.file: refused: an alias refers to a node that contains it at line 1, column 7"
    ]


def test_anchors_and_merge_keys_for_shared_settings_still_work(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        sources:
          - &one {provider: noxus, api_key: k-1234, base_url: "http://127.0.0.1:1", name: one}
          - {<<: *one, name: two, page_size: 7}
        """,
    )
    config = load_config(path, {})
    assert [(s.name, s.page_size) for s in config.sources] == [("one", 100), ("two", 7)]


def test_a_config_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# padding\n" * 120_000)
    assert problems_of(path) == [f"config.file: {str(path)!r} is larger than 1048576 bytes"]


def test_an_alias_bomb_in_an_environment_override_stays_a_string() -> None:
    data: dict[str, Any] = {}
    apply_env_overrides(data, {"WORKFLOW_EXPORTER_JUNK": ALIAS_BOMB})
    assert data == {"junk": ALIAS_BOMB}
