"""Reading a report.html as a person does: real Chromium opens the file from disk; what the page shows is read back
from its DOM, and every console error and uncaught exception is collected."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class OpenReport:
    page: Any  # playwright's sync Page
    errors: list[str] = field(default_factory=list)

    def cells(self, table: str, column: int) -> list[str]:
        return [t.strip() for t in self.page.locator(f"{table} tbody tr td:nth-child({column})").all_inner_texts()]

    def numbers(self, table: str, column: int) -> list[float | None]:
        return [float(t) if t else None for t in self.cells(table, column)]

    def screenshot(self, selector: str) -> bytes:
        png: bytes = self.page.locator(selector).screenshot()
        return png


@contextmanager
def open_report(path: Path, fragment: str = "") -> Iterator[OpenReport]:
    from playwright.sync_api import sync_playwright

    from jitrl_bench.envs.web.browser import chromium_executable

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable())
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            report = OpenReport(page)
            page.on("console", lambda m: report.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: report.errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else report.errors.append(r.url))
            page.goto(path.resolve().as_uri() + fragment)
            page.wait_for_selector("#provenance h3")  # the script's last section is built
            yield report
        finally:
            browser.close()


def report_data(path: Path) -> dict[str, Any]:
    """The JSON the page was built from (inlined in its <script id="data">)."""
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', path.read_text(), re.S)
    assert match, f"{path} has no inlined data"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def varied_image(png: bytes) -> bool:
    """A screenshot with something drawn in it (not one flat colour)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return pixels.size > 10_000 and float(pixels.std()) > 5.0
