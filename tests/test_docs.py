"""The README and docs/ link only to files and sections that exist, and the README stays a user's page.

Cheap checks, no Keras: every relative link of README.md and docs/**/*.md resolves (file, and heading anchor where
one is given), the README is at most 150 lines and its test command is the one `.ci/run` runs verbatim, and the
commands the user-facing pages name (`python -m MODULE`, `benchmarks/SCRIPT`) exist.
"""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
# The pages a user reads; docs/experiments/ is the lab log, whose commands are history.
USER_PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
MODULE = re.compile(r"python3? -m ([A-Za-z_][\w.]*)")
SCRIPT = re.compile(r"\b(benchmarks/[\w/]+\.(?:py|sh))\b")
README_MAX_LINES = 150
TEST_COMMAND = 'pip install -e ".[dev]" && python -m pytest'


def doc_id(path):
    return str(path.relative_to(ROOT))


def heading_anchors(path):
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_docs_exist():
    names = {doc_id(p) for p in DOCS}
    assert {"docs/results.md", "docs/deploying.md", "docs/experiments/README.md"} <= names, names


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_links_resolve(doc):
    links = LINK.findall(doc.read_text())
    assert links, doc
    broken = []
    for link in links:
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(link)
        elif anchor and (path.suffix != ".md" or anchor not in heading_anchors(path)):
            broken.append(link)
    assert not broken, broken


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, "the README's test command must be the line .ci/run runs"
    assert f"```bash\n{TEST_COMMAND}\n```" in README.read_text()


def test_readme_has_no_lab_entries():
    text = README.read_text()
    assert "git show" not in text
    # A table cell that grew into a paragraph belongs in docs/.
    longest = max(len(cell) for line in text.splitlines() if line.startswith("|") for cell in line.split("|"))
    assert longest <= 300, longest


@pytest.mark.parametrize("doc", USER_PAGES, ids=doc_id)
def test_named_commands_exist(doc):
    text = doc.read_text()
    missing = sorted(
        {
            m
            for m in MODULE.findall(text)
            if m.split(".")[0] in ("keras_vit", "export") and importlib.util.find_spec(m) is None
        }
    )
    missing += sorted({s for s in SCRIPT.findall(text) if not (ROOT / s).is_file()})
    assert not missing, missing
