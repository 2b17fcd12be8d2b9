// The page as WebRL's checkpoints read it (VisualAgentBench's "simplified HTML"), built in the page, read-only:
// the innermost clickable elements that are on screen and not covered are numbered 0, 1, 2... in document order, and
// the visible tree is written as <tag id="N" attrs> text children </tag> on one line. Returns the text and, for each
// number, the element's BrowserGym id, so an action on "N" runs on the env's own element. Nothing is modified.
(viewport) => {
  const W = viewport.width, H = viewport.height;
  const CLICK_ROLES = new Set(["button", "tab", "link", "checkbox", "menuitem", "menuitemcheckbox", "menuitemradio", "radio"]);
  const CLICK_TAGS = new Set(["input", "textarea", "select", "button", "a", "iframe", "video", "object", "embed", "details"]);
  const SKIP = new Set(["script", "style", "noscript", "template"]);
  const KEPT = ["title", "value", "type", "placeholder", "selected", "data-value", "data-text", "data-testid",
                "data-label", "data-bbox", "data-status"];
  const squash = (s) => (s || "").replace(/\s+/g, " ").trim();
  const cut = (s) => s.slice(0, 500);

  function bbox(el) {
    const rects = el.getClientRects();
    if (!rects.length) return null;
    const r = rects[0];
    return [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)];
  }
  function directText(el) {
    const parts = [];
    for (const n of el.childNodes) if (n.nodeType === 3 && squash(n.textContent)) parts.push(squash(n.textContent));
    return parts;
  }
  function isCandidate(el) {
    const tag = el.tagName.toLowerCase();
    const style = window.getComputedStyle(el);
    if (el.onclick || el.hasAttribute("onclick") || style.cursor === "pointer") return true;
    if (CLICK_ROLES.has((el.getAttribute("role") || "").toLowerCase())) return true;
    if (el.isContentEditable) return true;
    if (CLICK_TAGS.has(tag)) return !(tag === "input" && (el.getAttribute("type") || "").toLowerCase() === "hidden");
    if (tag === "label" && el.control && !el.control.disabled) return true;
    if ((el.getAttribute("class") || "").includes("button")) return true;
    const tabindex = el.getAttribute("tabindex");
    return tabindex !== null && parseInt(tabindex, 10) >= 0;
  }
  function onScreen(el) {  // some rect whose centre hits the element (not covered), clipped to the viewport
    let area = 0;
    for (const r of el.getClientRects()) {
      const x = r.left + r.width / 2, y = r.top + r.height / 2;
      const hit = (x >= 0 && y >= 0 && x < W && y < H) ? document.elementFromPoint(x, y) : null;
      if (!hit || !(hit === el || el.contains(hit))) continue;
      const w = Math.min(r.right, W) - Math.max(r.left, 0), h = Math.min(r.bottom, H) - Math.max(r.top, 0);
      if (w > 0 && h > 0) area += w * h;
    }
    return area >= 1;
  }

  const all = Array.from(document.body ? document.body.querySelectorAll("*") : []);
  const candidates = all.filter((el) => !SKIP.has(el.tagName.toLowerCase()) && isCandidate(el) && onScreen(el));
  const holdsOne = new Set();  // every ancestor of a candidate: a candidate in it is not innermost
  for (const el of candidates) {
    for (let up = el.parentElement; up && !holdsOne.has(up); up = up.parentElement) holdsOne.add(up);
  }
  const innermost = candidates.filter((el) => !holdsOne.has(el));
  const labels = new Map(), ids = {};
  innermost.forEach((el, i) => {
    labels.set(el, String(i));
    ids[String(i)] = el.getAttribute("bid") || "";
  });

  function attributes(el) {
    const tag = el.tagName.toLowerCase();
    const box = bbox(el);
    const values = {};
    for (const name of ["title", "value", "type", "placeholder", "data-testid", "data-label"]) {
      if (el.hasAttribute(name)) values[name] = el.getAttribute(name);
    }
    values["data-text"] = directText(el).join(",");
    if (tag === "select") {
      values["data-value"] = el.value;
      const chosen = el.options[el.selectedIndex];
      values["data-text"] = chosen ? squash(chosen.textContent) : "";
    } else if (tag === "input" || tag === "textarea") {
      values["data-value"] = el.value;
    }
    if (tag === "input" && (el.getAttribute("type") || "").toLowerCase() === "checkbox") {
      values["data-status"] = el.checked ? "checked" : "not-checked";
    }
    if (tag === "option" && el.selected) values["data-status"] = "selected";
    if (box) values["data-bbox"] = box.join(",");
    const kept = [], seen = new Set();
    for (const name of KEPT) {
      let v = values[name];
      if (v === undefined || v === null) continue;
      v = cut(String(v).trim());
      if (!v || (name === "type" && v.toLowerCase() === "hidden") || seen.has(v)) continue;
      seen.add(v);
      kept.push([name, v]);
    }
    return { box, kept };
  }
  function visible(el, box) {
    if (!box || el.getAttribute("aria-hidden") === "true") return false;
    const [x, y, w, h] = box;
    return x <= W && x + w >= 0 && y <= H && y + h >= 0;
  }
  function leadingText(el) {  // the text before the first child element
    const parts = [];
    for (const n of el.childNodes) {
      if (n.nodeType === 1) break;
      if (n.nodeType === 3) parts.push(n.textContent);
    }
    return cut(squash(parts.join(" ")));
  }
  const bearing = new Map();
  function textBearing(el) {
    if (bearing.has(el)) return bearing.get(el);
    const yes = !!squash(el.textContent) || Array.from(el.children).some(textBearing);
    bearing.set(el, yes);
    return yes;
  }
  // one element: its rendered pieces (itself, or its children's when it is unwrapped)
  function render(el, parentSelectEmitted) {
    const tag = el.tagName.toLowerCase();
    if (SKIP.has(tag)) return [];
    const { box, kept } = attributes(el);
    const label = labels.get(el);
    const children = [];
    for (const child of el.children) children.push(...render(child, tag === "select" && emitted(el, box, kept, label)));
    if (!emitted(el, box, kept, label, parentSelectEmitted)) return children;
    const text = leadingText(el);
    const open = `<${tag}${label !== undefined ? ` id="${label}"` : ""}${kept.map(([k, v]) => ` ${k}="${v}"`).join("")}>`;
    const inner = [text, ...children].filter((s) => s).join(" ");
    return [`${open} ${inner ? inner + " " : ""}</${tag}>`];
  }
  function emitted(el, box, kept, label, optionOfSelect) {
    const tag = el.tagName.toLowerCase();
    const shown = visible(el, box) || label !== undefined || (tag === "option" && optionOfSelect);
    if (!shown) return false;
    const hasText = !!leadingText(el);
    const hasAttr = kept.some(([k]) => k !== "data-bbox");
    const bearingChildren = Array.from(el.children).filter(textBearing).length;
    return hasText || hasAttr || label !== undefined || bearingChildren > 1;
  }
  return { text: render(document.documentElement, false).join(" "), ids };
}
