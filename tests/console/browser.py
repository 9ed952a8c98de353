"""A real browser and a real console for the browser tests: headless Chromium from the Debian
packages (``chromium``, ``chromium-driver``; scripts/install-system-deps.sh installs them)
driven by Selenium, and ``fileops console`` as a subprocess beside the Stack's daemon.

Nothing is downloaded: Selenium is given the system chromedriver and browser, and told to stay
offline. With IAP, the browser sends a locally signed ``x-goog-iap-jwt-assertion`` on every
request (Chrome DevTools' Network.setExtraHTTPHeaders), as the load balancer would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import REPO, Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: Where screenshots go: FILEOPS_CONSOLE_SCREENSHOTS=docs/console refreshes the docs' images;
#: unset, none are taken (a test run does not rewrite files in the repository).
SCREENSHOTS = os.environ.get("FILEOPS_CONSOLE_SCREENSHOTS", "")


def need_browser() -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "headless Chromium is not installed: `bash scripts/install-system-deps.sh` "
            "(Debian packages chromium and chromium-driver; make test runs it)"
        )


class ConsoleProcess:
    """``fileops console`` with its stderr in a log; the URL it printed."""

    def __init__(self, stack: Stack, log: Path, **env: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fileops_daemon.cli", "console"],
                cwd=REPO,
                env=stack.env(FILEOPS_LOG_FORMAT="console", **env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"fileops console: (http://\S+)", log.read_text(errors="replace"))
            if found:
                self.url = found.group(1).rstrip("/")
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the console did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def chromium(assertion: str | None = None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    need_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        if assertion is not None:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders",
                {"headers": {"x-goog-iap-jwt-assertion": assertion}},
            )
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    """NAME.png in $FILEOPS_CONSOLE_SCREENSHOTS, the whole page (for docs/console.md)."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1280, 900)
