"""The front page and the manual: a short README with the two commands, and a mkdocs site that builds strictly.

``mkdocs build --strict`` fails on a broken link or anchor, a page missing from the nav, and any docstring the
API reference (mkdocstrings) cannot parse, so the manual cannot drift from the code it documents.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMANDS = ("bash scripts/env.sh snakemake --cores 2 all", "bash scripts/env.sh pytest")


def test_readme_is_a_short_front_page_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for command in COMMANDS:
        assert re.search(rf"^{re.escape(command)}\b", text, re.M), command
    assert "bash scripts/env.sh pytest" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


def test_readme_links_and_images_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    assert targets
    assert [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()] == []


def test_the_manual_builds_strictly_with_its_api_reference(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "index.html").is_file() and (site / "results" / "index.html").is_file()
    api = (site / "reference" / "config" / "index.html").read_text()
    assert "RunConfig" in api and "interim_eval_samples" in api  # rendered from the docstrings


def test_the_front_page_figure_is_drawn_from_the_documented_table(tmp_path):
    """The README's figure is what scripts/docs_figure.py draws from docs/results.md's accuracy table."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import docs_figure
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    header, rows = docs_figure.accuracy_table((ROOT / "docs" / "results.md").read_text())
    readme_rows = [r for r in README.read_text().splitlines() if r.startswith(("| cifar10 ", "| fashion_mnist "))]
    assert [[c.strip() for c in r.strip("|").split("|")] for r in readme_rows] == rows  # README table = docs table
    out = tmp_path / "figure.png"
    docs_figure.accuracy_figure(header, rows).savefig(out, dpi=110, metadata={"Software": None})
    committed = Image.open(ROOT / "docs" / "img" / "default-accuracy.png")
    assert committed.size == Image.open(out).size
    assert committed.tobytes() == Image.open(out).tobytes()
