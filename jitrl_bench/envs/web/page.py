"""A page seen as BrowserGym sees it: each element marked with a `bid`, the accessibility tree flattened to lines like
`[13] button 'Submit'`, and the actionable elements with keys that stay the same across pages and episodes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import playwright.sync_api as pw
from browsergym.core.observation import (
    MarkingError,
    _post_extract,
    _pre_extract,
    extract_dom_extra_properties,
    extract_dom_snapshot,
    extract_focused_element_bid,
    extract_merged_axtree,
)
from browsergym.utils.obs import flatten_axtree_to_str

from jitrl_bench.contract import PageText
from jitrl_bench.envs.web.simplified_html import simplified_html

EXTRACT_TRIES = 3
IGNORED_ROLES = ["LineBreak", "InlineTextBox"]  # layout fragments that repeat their parent's text


@dataclass(frozen=True)
class Element:
    """An actionable page element: its volatile BrowserGym id and its stable role and label."""

    bid: str
    role: str
    name: str
    value: str = ""
    options: tuple[str, ...] = ()
    """The choices of a select (combobox/listbox), in page order."""

    @property
    def label(self) -> str:
        """The element's name on one line, at most 80 characters."""
        return " ".join(self.name.split())[:80]

    @property
    def key(self) -> str:
        """`role[label]`: the same control on another page or episode has the same key (the bid changes)."""
        return f"{self.role}[{self.label}]"


@dataclass(frozen=True)
class PageView:
    """What the agent sees of a page: its URL and title, the flattened accessibility tree, the actionable elements."""

    url: str
    title: str
    axtree: str
    elements: tuple[Element, ...]
    focused: str = ""
    html: PageText | None = None
    """The simplified HTML (WebRL's observation), with its element numbers' bids."""


CLICK_ROLES = frozenset(
    {"button", "link", "checkbox", "radio", "tab", "menuitem", "option", "switch", "treeitem", "combobox"}
)
TEXT_ROLES = frozenset({"textbox", "searchbox", "spinbutton"})
SELECT_ROLES = frozenset({"combobox", "listbox"})


def _prop(node: dict[str, Any], key: str) -> str:
    value = (node.get(key) or {}).get("value", "")
    return str(value) if value is not None else ""


def _descendant_names(node: dict[str, Any], nodes: dict[str, dict[str, Any]], role: str, limit: int) -> list[str]:
    """Names of the nearest descendants with `role`, in page order, until `limit` characters."""
    parts: list[str] = []
    stack = list(reversed(node.get("childIds", [])))
    while stack and sum(map(len, parts)) < limit:
        child = nodes.get(stack.pop())
        if child is None:
            continue
        if _prop(child, "role") == role:
            parts.append(_prop(child, "name"))
        else:
            stack.extend(reversed(child.get("childIds", [])))
    return parts


def _text_of(node: dict[str, Any], nodes: dict[str, dict[str, Any]], limit: int = 200) -> str:
    """The visible text under a node (its StaticText descendants), for elements the tree leaves unnamed."""
    return " ".join(" ".join(_descendant_names(node, nodes, "StaticText", limit)).split())[:limit]


def _prepare_axtree(axtree: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    """In place: drop the page URL from the root line (it is in the state); give clickable unnamed containers (e.g.
    MiniWoB's `<span class="alink">`) their text as name and a `clickable` property, so the flattened tree shows
    them with their id and they become candidates."""
    nodes = {node["nodeId"]: node for node in axtree["nodes"]}
    for node in axtree["nodes"]:
        if _prop(node, "role") == "RootWebArea":  # its URL (a local file path for MiniWoB) is in the state instead
            node["properties"] = [p for p in node.get("properties", []) if p.get("name") != "url"]
        bid = node.get("browsergym_id")
        if not bid or _prop(node, "role") != "generic" or not extra.get(bid, {}).get("clickable"):
            continue
        text = _prop(node, "name") or _text_of(node, nodes)
        if text:
            node["name"] = {"type": "computedString", "value": text}
            node["properties"] = [*node.get("properties", []), {"name": "clickable", "value": {"value": True}}]


def _elements(axtree: dict[str, Any], extra: dict[str, dict[str, Any]]) -> tuple[Element, ...]:
    """Visible nodes that carry a bid and have an interactive role, or are clickable and named."""
    found: dict[str, Element] = {}
    nodes = {node["nodeId"]: node for node in axtree["nodes"]}
    for node in axtree["nodes"]:
        bid = node.get("browsergym_id")
        if not bid or node.get("ignored") or bid in found:
            continue
        role, name, props = _prop(node, "role"), _prop(node, "name"), extra.get(bid, {})
        if not props.get("visibility"):
            continue
        if role in CLICK_ROLES | TEXT_ROLES | SELECT_ROLES or (props.get("clickable") and name.strip()):
            options = _descendant_names(node, nodes, "option", 4000) if role in SELECT_ROLES else []
            found[bid] = Element(bid, role, name, _prop(node, "value"), tuple(o for o in options if o.strip())[:50])
    return tuple(found.values())


def observe(page: pw.Page) -> PageView:
    """Mark the page's elements with bids and read its accessibility tree (retried while frames settle)."""
    for tries_left in reversed(range(EXTRACT_TRIES)):
        try:
            _pre_extract(page, lenient=tries_left == 0)
            dom = extract_dom_snapshot(page)
            axtree = extract_merged_axtree(page)
            focused = extract_focused_element_bid(page) or ""
            extra = extract_dom_extra_properties(dom, scale_factor=getattr(page, "_bgym_scale_factor", 1.0))
            _post_extract(page)
            break
        except (pw.Error, MarkingError):
            if tries_left == 0:
                raise
            time.sleep(0.2)
    _prepare_axtree(axtree, extra)
    text = flatten_axtree_to_str(axtree, extra_properties=extra, filter_visible_only=True, ignored_roles=IGNORED_ROLES)
    return PageView(page.url, page.title(), text, _elements(axtree, extra), focused, simplified_html(page))
