"""A real headless Chromium (Debian's `chromium`) for checking report pages as a person sees them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """The browser; CI installs it (.ci/run), so there its absence is a failure, elsewhere a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def run(page: Path, tmp_path: Path, *args: str, fragment: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                           page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)


def dom(page: Path, tmp_path: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran."""
    return run(page, tmp_path, "--dump-dom", fragment=fragment).stdout


def screenshot(page: Path, tmp_path: Path, out: Path, size: str = "1200,2400") -> Path:
    run(page, tmp_path, f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars")
    return out
