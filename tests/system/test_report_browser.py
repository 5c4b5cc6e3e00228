# The HTML report in a real browser (Debian's Chromium, headless): it renders, logs no console error,
# fetches nothing, and the screenshot kept in the test's tmp dir shows a picture, not a blank page.
"""Browser check of the HTML report of plugins/module_utils/report.py."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from ansible_collections.kubesnap.snapshots.plugins.module_utils import report
from ansible_collections.kubesnap.snapshots.tests.unit.plugins.module_utils.test_report import NOW, outcome

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
    # The browser parsed what was written: every timeline is an SVG element with its marks (two clusters, each with three
    # volumes that need attention, in the summary and in their namespace's details, and an axis atop each table).
    assert dom.stdout.count("<svg") == 16 and dom.stdout.count("<circle") == 20
    assert "staging" in dom.stdout and "403 Forbidden" in dom.stdout


def test_the_error_check_sees_an_error_when_there_is_one(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>undefinedFunction()</script></body></html>', encoding="utf-8")
    errors = page_errors(chromium(tmp_path, broken, "--dump-dom").stderr)
    assert any("undefinedFunction" in line for line in errors), errors
