"""The documentation site builds in strict mode (no broken link, no missing image), and its
pages about the code are generated from it: every stage and every setting has its entry."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from jobs import stages
from jobs.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_a_page_per_stage_and_every_setting(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    for stage in stages.STAGES:
        page = (tmp_path / "stages" / stage.name / "index.html").read_text()
        assert stage.doc.split("`")[0] in page and stage.module in page
    configuration = (tmp_path / "configuration" / "index.html").read_text()
    for name in Settings.model_fields:
        assert f"NIGHTJAR_{name.upper()}" in configuration, name
    adapters = (tmp_path / "adapters" / "index.html").read_text()
    for module in (ROOT / "jobs" / "adapters").glob("[!_]*.py"):
        assert f"jobs/adapters/{module.name}" in adapters
    overview = (tmp_path / "index.html").read_text()
    assert "request_retrain --&gt; " not in overview  # the last stage leads nowhere
    assert all(f"{a} --&gt; {b}" in overview for a, b in pairwise(stages.NAMES))
