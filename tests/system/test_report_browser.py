# The HTML report in a real browser (Debian's Chromium, headless): it renders, logs no console error,
# fetches nothing, and the screenshot kept in the test's tmp dir shows a picture, not a blank page.
"""Browser check of the HTML report of plugins/module_utils/report.py."""

from __future__ import annotations

import collections
import html.parser
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import report
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_report import NOW, outcome, snapshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="NO BROWSER: the HTML report is NOT checked; install Debian's chromium (apt-get install -y chromium, as .ci/run does)")


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local page, logging console messages and failed loads to stderr."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--window-size=1600,1000", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def page_errors(stderr: str) -> list[str]:
    """Console messages and failed loads Chromium logged for the page."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line or "net::ERR_" in line]


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (filtered) scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))


@pytest.fixture
def html_report(tmp_path):
    built = report.build([outcome("prod"), outcome("staging", errors=["not pruned: db/data-0: data-0-stuck: 403 Forbidden"])], NOW)
    path = tmp_path / "report.html"
    report.write_atomically(str(path), report.page(built))
    return path


def test_the_report_renders_without_errors_and_the_screenshot_shows_it(tmp_path, html_report):
    screenshot = tmp_path / "report.png"
    shot = chromium(tmp_path, html_report, f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-3000:]
    assert page_errors(shot.stderr) == []
    width, height, pixels = png_pixels(screenshot)
    assert (width, height) == (1600, 1000)
    # A blank page compresses to almost nothing and has a handful of distinct byte values.
    assert screenshot.stat().st_size > 20_000 and len(set(pixels)) > 64, screenshot
    dom = chromium(tmp_path, html_report, "--dump-dom")
    assert dom.returncode == 0 and page_errors(dom.stderr) == []
    # The browser parsed what was written: every timeline in the summary is an SVG element with its marks (two clusters,
    # each with three volumes that need attention and an axis atop their table); the namespaces' are not drawn until opened.
    drawn = without_pending_timelines(dom.stdout)
    assert drawn.count("<svg") == 8 and drawn.count("<circle") == 10
    assert "staging" in dom.stdout and "403 Forbidden" in dom.stdout


def without_pending_timelines(dom: str) -> str:
    """The DOM without what waits to be opened: the namespaces' tables held as text in <noscript> (serialized as their
    markup) and the timelines held in data-svg attributes."""
    return re.sub(r'data-svg="[^"]*"', "", re.sub(r"<noscript>.*?</noscript>", "", dom, flags=re.S))


def large_outcome(volumes: int, namespaces: int) -> dict:
    """A cluster's outcome of `volumes` volumes over `namespaces` namespaces: three snapshots each, one expired this run,
    every 100th volume's snapshot failed (so it needs attention)."""
    names = [f"ns-{index % namespaces:02d}/data-{index:05d}" for index in range(volumes)]
    created = [{"volume": name, "policy": "PT1H P1D", "action": "failed" if index % 100 == 0 else "skipped",
                "reason": "snapshot failed: quota exceeded" if index % 100 == 0 else "not due", "backend": "csi"}
               for index, name in enumerate(names)]
    expired = [{"volume": name, "policy": "PT1H P1D", "orphan": False, "failed": [], "expire": [snapshot(f"{name}-old", 30)],
                "keep": [snapshot(f"{name}-day", 20, reason="generation PT1H (window P1D)"), snapshot(f"{name}-new", 0.5, reason="newest")]}
               for name in names]
    return outcome("big", snapshot={"volumes": created}, expire={"volumes": expired}, info={"failed": True})


def test_a_large_report_opens_on_its_summaries_and_draws_a_namespace_when_it_is_opened(tmp_path):
    built = report.build([large_outcome(3000, 30)], NOW)
    page = tmp_path / "large.html"
    report.write_atomically(str(page), report.page(built))
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0 and page_errors(dom.stderr) == []
    # Summaries: the volumes needing attention (every 100th: 30, drawn), totals per namespace, backend and tier.
    assert "Needs attention: 30 volumes" in dom.stdout and "quota exceeded" in dom.stdout
    assert len(re.findall(r"<tr><td>ns-\d\d</td><td class=\"num\">100</td>", dom.stdout)) == 30
    assert re.search(r"<tr><td>csi</td><td class=\"num\">3000</td>", dom.stdout)
    # Each namespace's 100 lines are in the page, closed, neither rows nor timelines built: only the summary's are elements.
    assert len(re.findall(r"<details><summary><b>ns-\d\d</b>: 100 volumes", dom.stdout)) == 30
    assert without_pending_timelines(dom.stdout).count("<svg") == 1 + 30
    assert without_pending_timelines(dom.stdout).count("<tr><td>ns-") == 30 + 30  # the attention list and the totals
    # Opened (as a click does), a namespace draws its timelines, and only its own.
    opened = tmp_path / "opened.html"
    opened.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>addEventListener('load', () => { document.querySelectorAll('details')[5].open = true; });</script></body>"),
        encoding="utf-8")
    dom = chromium(tmp_path, opened, "--dump-dom")
    assert dom.returncode == 0 and page_errors(dom.stderr) == []
    drawn = without_pending_timelines(dom.stdout)
    assert drawn.count("<svg") == 1 + 30 + 1 + 100 and drawn.count('aria-label="timeline of ns-04/') == 100
    assert drawn.count("<tr><td>ns-04/") == 100 and "<noscript>" in dom.stdout.split("<b>ns-05</b>")[1].split("</details>")[0]
    # Each line says in words what its timeline draws (what a reader without scripts has).
    assert dom.stdout.count("<td>PT1H, newest</td>") == 3000 + 30


def test_the_error_check_sees_an_error_when_there_is_one(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>undefinedFunction()</script></body></html>', encoding="utf-8")
    errors = page_errors(chromium(tmp_path, broken, "--dump-dom").stderr)
    assert any("undefinedFunction" in line for line in errors), errors


# Names from the cluster are the attacker's text: a namespace, a claim, a snapshot, a policy, an error. An element they
# made would load `x` (a failed load the error check sees) or run its handler (a console message).
HOSTILE = "</noscript></details><script>console.error('ran')</script><img src=x onerror=\"console.error('img')\">'&amp;"


def hostile_outcome() -> dict:
    volume = f"ns{HOSTILE}/claim{HOSTILE}"
    return outcome(f"prod{HOSTILE}", errors=[HOSTILE],
                   snapshot={"volumes": [{"volume": volume, "policy": "PT1H", "action": "failed", "reason": HOSTILE, "backend": HOSTILE},
                                         {"volume": "quiet/" + HOSTILE, "policy": "PT1H", "action": "skipped"}]},
                   expire={"volumes": [{"volume": volume, "policy": "PT1H", "orphan": False, "expire": [snapshot(f"old{HOSTILE}", 30)],
                                        "failed": [{"name": f"old{HOSTILE}", "error": HOSTILE}], "keep": []}]},
                   info={"volumes": [{"volume": volume, "policy": "PT1H", "snapshots": [snapshot(f"s{HOSTILE}", 0.5, reason=HOSTILE)]},
                                     {"volume": "quiet/" + HOSTILE, "policy": "PT1H", "snapshots": [snapshot("q", 0.5, reason="newest")]}]})


def test_names_from_the_cluster_stay_text_with_scripts_and_every_namespace_opened_and_without_scripts(tmp_path):
    page = tmp_path / "hostile.html"
    report.write_atomically(str(page), report.page(report.build([hostile_outcome()], NOW)).replace(
        "</body>", "<script>addEventListener('load', () => { document.querySelectorAll('details').forEach(d => { d.open = true; }); });"
                   "</script></body>"))
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0 and page_errors(dom.stderr) == []
    drawn = without_pending_timelines(dom.stdout)
    # Both namespaces drawn from their held text: rows and timelines, the names in them as text.
    assert "<noscript>" not in dom.stdout and drawn.count("<tr><td>quiet/") == 1 and drawn.count('aria-label="timeline of ') == 2 + 1
    assert "<img" not in drawn and drawn.count("<script>") == 2 and "&lt;img src=x" in drawn
    # Without scripts a browser parses the held tables as markup (Chromium's --dump-dom needs scripts, so the page is
    # read as it does then, by a parser that gives <noscript> no special treatment): rows, and no element made of a name.
    parsed = StartTags()
    parsed.feed(report.page(report.build([hostile_outcome()], NOW)))
    assert parsed.tags["script"] == 1 and parsed.tags["img"] == 0 and parsed.tags["noscript"] == 2 and parsed.tags["tr"] > 8


class StartTags(html.parser.HTMLParser):
    """Counts the elements a page makes, <noscript>'s content parsed as markup (what a browser without scripts does)."""

    def __init__(self):
        super().__init__()
        self.tags = collections.Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
