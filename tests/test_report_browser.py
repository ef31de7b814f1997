"""The report page in a real browser: headless Chromium opens it offline and reports, from inside the
page, which sections exist and whether every image decoded (naturalWidth > 0).

Chromium is driven with ``--dump-dom`` on a copy of the page with one checking script appended; the
script runs on ``load`` and writes its result as JSON into the DOM. Skipped where Chromium is absent,
except in CI (``CI`` set), where its absence is a failure (.ci/run installs it).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from taskonomy.report.build import SECTION_IDS, write_report
from test_report import BUDGETS, write_report_inputs

CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}));
  const sections = [...document.querySelectorAll("section[id]")].map(s => s.id);
  const pre = document.createElement("pre");
  pre.id = "browser-check";
  pre.textContent = JSON.stringify({sections, imgs});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not on PATH (CI must install it: .ci/run)")
        pytest.skip("chromium is not on PATH")
    return path


def test_report_opens_offline_with_every_section_and_image(tmp_path):
    chromium = _chromium()
    inputs, params = write_report_inputs(tmp_path / "run")
    out = tmp_path / "run" / "reports"
    write_report(inputs, params, html=out / "index.html", markdown=out / "README.md",
                 figures_dir=out / "report_figures", root=tmp_path)
    page = tmp_path / "checked.html"   # elsewhere than the report: it must not need its folder
    page.write_text((out / "index.html").read_text().replace("</body>", CHECK + "</body>"))

    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no check result in the DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))

    assert check["sections"] == list(SECTION_IDS)
    assert len(check["imgs"]) == 5 + len(BUDGETS)
    broken = [i["alt"] for i in check["imgs"] if not (i["complete"] and i["width"] > 0)]
    assert broken == []
