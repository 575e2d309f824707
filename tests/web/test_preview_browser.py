"""A real browser looks at `mailer preview --serve`: the rendered email is on the page, and edits show up by themselves.

Debian's Chromium, headless, against the real command started as a
subprocess on a free loopback port. Skipped, with the reason, when Chromium
is not installed (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chromium import CHROMIUM, HEADLESS_FLAGS
from tests.support.png import colour_shares, read_pixels

pytestmark = pytest.mark.slow

MAILER = Path(sys.executable).with_name("mailer")
FLAGS = HEADLESS_FLAGS
CARD_BEIGE = (244, 241, 236)  # _style.css: the email's background
PAGE_HEADER = (47, 42, 36)  # the preview page's own header bar


@contextlib.contextmanager
def serving(project: Path, log: Path) -> Iterator[str]:
    """`mailer preview --serve --port 0` in a subprocess; yields its address, stops it afterwards."""
    with open(log, "w") as errors:  # a file, not a pipe: request logs can never fill it up and block the server
        proc = subprocess.Popen(
            [str(MAILER), "--config", str(project), "preview", "--serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            line = proc.stdout.readline() if selector.select(timeout=60) else ""
        if not line.startswith("preview on http://127.0.0.1:"):
            raise RuntimeError(f"mailer preview --serve did not start: {line}{log.read_text()}")
        yield line.split()[2]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        proc.stdout.close()


@pytest.fixture
def preview_url(project: Path, tmp_path: Path) -> Iterator[str]:
    with serving(project, tmp_path / "preview.log") as url:
        yield url


def chromium(tmp_path: Path, *args: str) -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs the Debian package `chromium`)")
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_chromium_shows_the_rendered_email_with_subject_html_and_text(preview_url: str, tmp_path: Path) -> None:
    url = f"{preview_url}t/anniversary?customer=sample-full&date=2026-11-23"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert "Subject:</span> 5 years together, Amelia: thank you" in dom
    assert '<pre id="text">Happy 5th anniversary, Amelia.' in dom
    assert "This week marks 5 years since then" in dom  # in the HTML part (the iframe's srcdoc) and the text part
    assert 'id="problems"' not in dom

    shot = tmp_path / "preview.png"
    # A virtual-time budget lets the sandboxed frame finish painting before the shot, however busy the machine.
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1000", "--virtual-time-budget=5000", url)
    Path(os.environ.get("MAILER_SCREENSHOT_DIR", tmp_path)).joinpath("preview.png").write_bytes(shot.read_bytes())
    width, height, pixels = read_pixels(shot)
    assert (width, height) == (1280, 1000)
    shares = colour_shares(pixels)
    assert len(shares) > 50  # text and anti-aliasing: not a blank page
    assert shares.most_common(1)[0][1] < 0.9 * len(pixels)
    assert shares[CARD_BEIGE] > 0.05 * len(pixels)  # the email itself was drawn inside the frame
    assert shares[PAGE_HEADER] > 0.01 * len(pixels)  # and the preview page around it


def test_an_error_in_a_template_is_shown_in_place_of_the_email(preview_url: str, project: Path, tmp_path: Path) -> None:
    subject = project.parent / "templates" / "email" / "birthday" / "subject.txt"
    subject.write_text("Happy birthday, {{ customer.frist_name }}!\n", encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", f"{preview_url}t/birthday")
    assert 'id="problems"' in dom
    assert (
        "templates/email/birthday/subject.txt:1: unknown variable 'customer.frist_name' "
        "(did you mean 'customer.first_name'?)" in dom
    )


def test_the_page_reloads_itself_when_a_template_file_changes(preview_url: str, project: Path, tmp_path: Path) -> None:
    from tests.web.test_browser import Browser  # DevTools-driven Chromium, shared with the unsubscribe test

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs the Debian package `chromium`)")
    browser = Browser(tmp_path / "devtools-profile")
    try:
        browser.open(f"{preview_url}t/silence?customer=sample-full")
        assert browser.text("#subject").startswith("Subject: We have missed you, Amelia")
        subject = project.parent / "templates" / "email" / "silence" / "subject.txt"
        subject.write_text("Thinking of you, {{ customer.first_name }}\n", encoding="utf-8")
        browser.wait_for_load()  # the page polls the templates' stamp and reloads itself
        assert browser.text("#subject").startswith("Subject: Thinking of you, Amelia")
    finally:
        browser.close()


@pytest.mark.parametrize("inliner", ["premailer", "css-inline"])
def test_every_email_fits_a_phone_screen_and_turns_dark_in_dark_mode(
    project: Path, tmp_path: Path, inliner: str
) -> None:
    from tests.web.test_browser import Browser

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs the Debian package `chromium`)")
    config = project.read_text(encoding="utf-8")
    project.write_text(config.replace('inliner = "premailer"', f'inliner = "{inliner}"'), encoding="utf-8")
    folder = project.parent / "templates" / "email"
    names = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith("_")]
    with serving(project, tmp_path / "preview.log") as preview_url:
        browser = Browser(tmp_path / "devtools-profile")

        def evaluate(expression: str) -> object:
            return browser.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

        try:
            browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)
            for name in names:
                browser.open(f"{preview_url}t/{name}/email.html?customer=sample-unicode")
                assert evaluate("document.documentElement.scrollWidth") == 390, f"{name} is wider than a phone"
                assert evaluate("getComputedStyle(document.querySelector('.card-body')).paddingLeft") == "20px"
            browser.open(f"{preview_url}answer-page")  # the page a click on an answer opens
            assert evaluate("document.documentElement.scrollWidth") == 390, "the answer page is wider than a phone"
            browser.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
            for name in names:
                browser.open(f"{preview_url}t/{name}/email.html?customer=sample-full")
                assert (
                    evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor") == "rgb(42, 41, 38)"
                )
                assert evaluate("getComputedStyle(document.querySelector('h1')).color") == "rgb(245, 241, 234)"
        finally:
            browser.close()
