"""What the browser tests share: Debian's chromium, driven by Playwright's sync API, and where screenshots go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmcxr_app.config import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
# Headless in a container: no sandbox, no GPU, no small /dev/shm, and nothing fetched in the background.
ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
)
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]


@contextmanager
def chromium(sync_api: Any) -> Iterator[Any]:
    """One Playwright and one chromium browser (the sync API cannot run two at once in a module)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()
