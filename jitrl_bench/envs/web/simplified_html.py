"""The page as WebRL's checkpoints were trained to read it: VisualAgentBench's simplified HTML, built by a read-only
script in the page (`js/simplified_html.js`; the rules are restated from that pipeline, WebRL's observation pipeline).

Its element numbers are its own (0, 1, 2... over the innermost clickable elements on screen, in document order,
renewed every step), so the view carries them with the env's BrowserGym id of each: an action on element "N" runs
on the env's element, through the env's safe operations.
"""

from __future__ import annotations

from importlib.resources import files

import playwright.sync_api as pw

from jitrl_bench.contract import PageText

SCRIPT = files("jitrl_bench.envs.web").joinpath("js/simplified_html.js").read_text(encoding="utf-8")
VIEWPORT = {"width": 1280, "height": 720}


def simplified_html(page: pw.Page) -> PageText:
    """The simplified HTML of the page's main frame and its element numbers' BrowserGym ids ("" when an element
    has none)."""
    viewport = page.viewport_size or VIEWPORT
    result = page.evaluate(SCRIPT, viewport)
    ids = {str(k): str(v) for k, v in dict(result.get("ids") or {}).items() if v}
    return PageText(str(result.get("text") or ""), ids)
