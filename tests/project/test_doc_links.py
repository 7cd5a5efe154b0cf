"""Every relative link and `#anchor` in the README and docs/ resolves, and every shipped alert's
`runbook_url` lands on a heading of the runbook: a moved section or a renamed heading fails here,
not in a reader's browser or an on-call engineer's alert."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from monitoring import rules

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "alerting.md"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target), the target up to a space (a title may follow) or `)`.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).*?\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: markup and punctuation dropped, lowercase, each
    space a `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(text):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            yield number, match.group(1)


def broken_links(page: Path, root: Path) -> list[str]:
    """What in `page` points nowhere: a missing file, or an anchor no heading makes."""
    problems = []
    text = page.read_text(encoding="utf-8")
    for number, target in links(text):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}:{number}: {target}"
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            problems.append(f"{where}: no such file")
        elif not linked.is_relative_to(root):
            problems.append(f"{where}: outside the repository")
        elif (
            anchor
            and linked.suffix == ".md"
            and anchor not in anchors(linked.read_text(encoding="utf-8"))
        ):
            problems.append(f"{where}: no heading makes #{anchor}")
    return problems


def _alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load(rules.RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    checked = pages()
    assert len(checked) > 10, "the README and the docs/ pages"
    problems = [problem for page in checked for problem in broken_links(page, ROOT)]
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_reference_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for _, target in links(readme)}
    missing = [f"docs/{page.name}" for page in pages()[1:] if f"docs/{page.name}" not in linked]
    assert not missing, f"the README does not link {missing}"


def test_every_shipped_alert_has_its_runbook_heading() -> None:
    thresholds = yaml.safe_load(rules.THRESHOLDS_FILE.read_text(encoding="utf-8"))
    base = thresholds["runbook_base_url"]
    # The base URL names a file of this repository (…/blob/<branch>/<path>): the runbook.
    assert base.rsplit("/blob/", 1)[1].split("/", 1)[1] == str(RUNBOOK.relative_to(ROOT))
    runbook = anchors(RUNBOOK.read_text(encoding="utf-8"))
    alerts = _alerts()
    assert alerts
    for alert in alerts:
        name = alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url == f"{base}#{name.lower()}", name
        assert name.lower() in runbook, f"{name}: docs/alerting.md has no heading `{name}`"


def test_github_anchors_drop_punctuation_and_number_repeats() -> None:
    text = (
        "# Static labels (`labels`)\n"
        "## Deployment: image, Compose, Kubernetes\n"
        "```sh\n# a shell comment, not a heading\n```\n"
        "### Steps\n#### Steps\n## Steps\n"
    )
    assert anchors(text) == {
        "static-labels-labels",
        "deployment-image-compose-kubernetes",
        "steps",
        "steps-1",
        "steps-2",
    }


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Home\n\n"
        "[fine](docs/other.md#a-section) [here](#home) [web](https://example.com/x#y)\n"
        "[gone](docs/missing.md) [wrong anchor](docs/other.md#no-such-section)\n"
        "`[in code](nowhere.md)` ![picture](docs/img/absent.png) [self](#nothing)\n"
        "```\n[fenced](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "README.md:4: docs/missing.md: no such file",
        "README.md:4: docs/other.md#no-such-section: no heading makes #no-such-section",
        "README.md:5: docs/img/absent.png: no such file",
        "README.md:5: #nothing: no heading makes #nothing",
    ]
