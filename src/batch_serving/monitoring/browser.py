"""Render a report in headless Chromium (Debian package ``chromium``): a PNG screenshot and
the page's console messages (a clean report logs none). For tests and the README image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for b in BROWSERS if (path := shutil.which(b))), None)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1800) -> list[str]:
    """Screenshot ``page`` into ``png``; return the console messages Chromium logged."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH (make system-deps installs it)")
    png.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
