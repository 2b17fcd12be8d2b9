// The report page: builds every section from the inlined JSON. Text from runs (observations, actions, answers) only
// ever goes through textContent, never innerHTML.
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "style") node.setAttribute("style", value);
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "onchange") node.addEventListener("change", value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return "";
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
  }
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---- sortable tables ---------------------------------------------------------------------------------------------

function sortableTable(rows, columns, id) {
  const table = el("table", { id });
  const head = el("tr");
  const body = el("tbody");
  let sortKey = null;
  let ascending = true;
  function fill() {
    const sorted = rows.slice();
    if (sortKey !== null) {
      sorted.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
        return ascending ? cmp : -cmp;
      });
    }
    body.replaceChildren(...sorted.map((row) => el("tr", {}, columns.map((c) =>
      el("td", { class: typeof row[c] === "number" ? "num" : "" }, fmt(row[c]))))));
  }
  for (const column of columns) {
    head.append(el("th", { class: "sortable", title: "sort by " + column, onclick: () => {
      ascending = sortKey === column ? !ascending : true;
      sortKey = column;
      fill();
    } }, column));
  }
  table.append(el("thead", {}, head), body);
  fill();
  return el("div", { class: "scroll" }, table);
}

// ---- summary -----------------------------------------------------------------------------------------------------

function runTable(id, rows, empty) {
  // one row per (run, task, agent): the run column only when the page holds several runs
  const section = document.getElementById(id);
  if (!rows.length) { section.append(el("p", {}, empty)); return; }
  const single = new Set(rows.map((r) => r.run)).size === 1;
  const columns = Object.keys(rows[0]).filter((c) => !(single && c === "run"));
  section.append(sortableTable(rows, columns, id + "-table"));
}

function summarySection() {
  runTable("summary", DATA.summary, "No finished episodes yet.");
}

function comparisonSection() {
  runTable("comparison", DATA.comparison,
    "No comparison: the run's reference agent (run.compare_to) did not play, or no other agent did.");
}

// ---- learning curves ---------------------------------------------------------------------------------------------

function seriesKey(episode) {
  // runs that differ only in their seed share a series; other varying config values split them
  const run = DATA.summary.find((r) => r.run === episode.run) || {};
  const parts = DATA.varying.filter((k) => k !== "run.seed").map((k) => k + "=" + fmt(run[k]));
  return [episode.agent, ...parts].join(" ");
}

function curvesSection() {
  const section = document.getElementById("curves");
  const metric = el("select", { id: "curve-metric" }, el("option", { value: "score" }, "score"),
    el("option", { value: "norm_score" }, "normalised score"), el("option", { value: "success" }, "success"));
  const holder = el("div", { class: "curves" });
  section.append(el("div", { class: "controls" }, el("label", {}, "metric", metric)), holder);
  const draw = () => holder.replaceChildren(...tasks().map((task) => curve(task, metric.value)));
  metric.addEventListener("change", draw);
  draw();
}

function tasks() { return [...new Set(DATA.episodes.map((e) => e.task))]; }

function curve(task, metric) {
  const W = 460, H = 260, L = 46, R = 12, T = 12, B = 34;
  const episodes = DATA.episodes.filter((e) => e.task === task && e.status === "ok");
  const series = new Map();
  for (const e of episodes) {
    const key = seriesKey(e);
    if (!series.has(key)) series.set(key, new Map());
    const byEpisode = series.get(key);
    if (!byEpisode.has(e.episode)) byEpisode.set(e.episode, []);
    byEpisode.get(e.episode).push(metric === "success" ? (e.success ? 1 : 0) : e[metric]);
  }
  const maxEpisode = Math.max(1, ...episodes.map((e) => e.episode + 1));
  const values = episodes.map((e) => (metric === "success" ? (e.success ? 1 : 0) : e[metric]));
  const top = Math.max(1e-9, ...values, metric === "score" ? Math.max(0, ...episodes.map((e) => e.max_score)) : 1);
  const bottom = Math.min(0, ...values);
  const x = (ep) => L + ((ep + 1 - 1) / Math.max(1, maxEpisode - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - bottom) / (top - bottom)) * (H - T - B);
  const plot = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  plot.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#8892a6" }));
  plot.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#8892a6" }));
  for (let i = 0; i <= 4; i++) {
    const v = bottom + (i / 4) * (top - bottom);
    plot.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10 }, fmt(Number(v.toFixed(2)))));
    plot.append(svg("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), stroke: "#eef1f6" }));
  }
  const step = Math.max(1, Math.ceil(maxEpisode / 8));
  for (let ep = 0; ep < maxEpisode; ep += step) {
    plot.append(svg("text", { x: x(ep), y: H - B + 14, "text-anchor": "middle", "font-size": 10 }, ep + 1));
  }
  plot.append(svg("text", { x: (L + W) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11 }, "episode"));
  const legend = el("div", { class: "legend" });
  [...series.entries()].forEach(([key, byEpisode], i) => {
    const color = COLORS[i % COLORS.length];
    const points = [...byEpisode.entries()].sort((a, b) => a[0] - b[0]).map(([ep, vs]) => {
      const mean = vs.reduce((s, v) => s + v, 0) / vs.length;
      const sd = vs.length > 1 ? Math.sqrt(vs.reduce((s, v) => s + (v - mean) ** 2, 0) / (vs.length - 1)) : 0;
      return { ep, mean, sd, n: vs.length };
    });
    if (points.some((p) => p.n > 1)) {
      const upper = points.map((p) => `${x(p.ep)},${y(p.mean + p.sd)}`);
      const lower = points.slice().reverse().map((p) => `${x(p.ep)},${y(p.mean - p.sd)}`);
      plot.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: color, opacity: 0.15 }));
    }
    plot.append(svg("polyline", { points: points.map((p) => `${x(p.ep)},${y(p.mean)}`).join(" "), fill: "none",
      stroke: color, "stroke-width": 2 }));
    for (const p of points) {
      plot.append(svg("circle", { cx: x(p.ep), cy: y(p.mean), r: 2.5, fill: color },
        svg("title", {}, `${key} · episode ${p.ep + 1}: ${fmt(p.mean)}${p.n > 1 ? ` ± ${fmt(p.sd)} (n=${p.n})` : ""}`)));
    }
    const n = Math.max(...points.map((p) => p.n));
    legend.append(el("span", {}, el("i", { style: `background:${color}` }), key + (n > 1 ? ` (n=${n} runs)` : "")));
  });
  return el("figure", {}, el("figcaption", {}, task), plot, legend);
}

// ---- decision viewer ---------------------------------------------------------------------------------------------

const viewer = { run: "", task: "", agent: "", episode: 0, step: 0 };

function keyOf(v) { return `${v.run}|${v.task}|${v.agent}|${v.episode}`; }

function decisionKeys() { return Object.keys(DATA.decisions).map((k) => k.split("|")); }

function options(select, values, current) {
  select.replaceChildren(...values.map((v) => el("option", { value: String(v) }, String(v))));
  if (values.map(String).includes(String(current))) select.value = String(current);
  return select.value;
}

function viewerSection() {
  const section = document.getElementById("viewer");
  if (!Object.keys(DATA.decisions).length) { section.append(el("p", {}, "No decisions recorded.")); return; }
  const selects = {};
  const controls = el("div", { class: "controls" });
  for (const name of ["run", "task", "agent", "episode", "step"]) {
    selects[name] = el("select", { id: "v-" + name });
    selects[name].addEventListener("change", () => {
      viewer[name] = name === "episode" || name === "step" ? Number(selects[name].value) : selects[name].value;
      if (name !== "step") viewer.step = 0;
      render();
    });
    controls.append(el("label", {}, name, selects[name]));
  }
  controls.append(el("button", { id: "v-prev", onclick: () => move(-1) }, "◀ step"),
    el("button", { id: "v-next", onclick: () => move(1) }, "step ▶"));
  const body = el("div", { id: "v-body" });
  section.append(controls, body);
  if (DATA.decisions_left_out) {
    section.append(el("p", { class: "warn" }, `${DATA.decisions_left_out} episodes' decisions are left out of this page (size); their step files have them.`));
  }

  function move(delta) {
    const steps = DATA.decisions[keyOf(viewer)] || [];
    viewer.step = Math.min(Math.max(viewer.step + delta, 0), Math.max(steps.length - 1, 0));
    render();
  }

  function render() {
    const keys = decisionKeys();
    viewer.run = options(selects.run, [...new Set(keys.map((k) => k[0]))], viewer.run);
    const inRun = keys.filter((k) => k[0] === viewer.run);
    viewer.task = options(selects.task, [...new Set(inRun.map((k) => k[1]))], viewer.task);
    const inTask = inRun.filter((k) => k[1] === viewer.task);
    viewer.agent = options(selects.agent, [...new Set(inTask.map((k) => k[2]))], viewer.agent);
    const eps = inTask.filter((k) => k[2] === viewer.agent).map((k) => Number(k[3])).sort((a, b) => a - b);
    viewer.episode = Number(options(selects.episode, eps, viewer.episode));
    const steps = DATA.decisions[keyOf(viewer)] || [];
    viewer.step = Number(options(selects.step, steps.map((s) => s.step), viewer.step));
    history.replaceState(null, "", "#d=" + encodeURIComponent([keyOf(viewer), viewer.step].join("|")));
    body.replaceChildren(...showDecision(steps.find((s) => s.step === viewer.step)));
  }

  viewer.goto = (run, task, agent, episode, step) => {
    Object.assign(viewer, { run, task, agent, episode: Number(episode), step: Number(step) });
    render();
    section.scrollIntoView();
  };
  const wanted = decodeURIComponent((location.hash.match(/^#d=(.*)$/) || [])[1] || "").split("|");
  if (wanted.length === 5) Object.assign(viewer, { run: wanted[0], task: wanted[1], agent: wanted[2],
    episode: Number(wanted[3]), step: Number(wanted[4]) });
  render();
}

function softmax(zs) {
  const known = zs.filter((z) => z !== null && z !== undefined);
  if (!known.length) return zs.map(() => null);
  const top = Math.max(...known);
  const exps = zs.map((z) => (z === null || z === undefined ? 0 : Math.exp(z - top)));
  const total = exps.reduce((s, v) => s + v, 0);
  return zs.map((z, i) => (z === null || z === undefined ? null : exps[i] / total));
}

function bar(value, kind, scale) {
  const holder = el("span", { class: "bar " + kind });
  if (value === null || value === undefined || !Number.isFinite(value)) return holder;
  if (kind === "adv") {
    const width = Math.min(50, (Math.abs(value) / (scale || 1)) * 50);
    holder.append(el("span", { class: value >= 0 ? "pos" : "neg",
      style: value >= 0 ? `left:50%;width:${width}%` : `left:${50 - width}%;width:${width}%` }));
  } else {
    holder.append(el("span", { style: `left:0;width:${Math.max(0, Math.min(1, value)) * 100}%` }));
  }
  return holder;
}

function showDecision(d) {
  if (!d) return [el("p", {}, "No such step.")];
  const episode = DATA.episodes.find((e) => e.run === viewer.run && e.task === viewer.task &&
    e.agent === viewer.agent && e.episode === viewer.episode) || {};
  const facts = el("div", { class: "facts", id: "v-facts" },
    el("span", {}, el("b", {}, "chosen"), el("span", { id: "v-action" }, d.action)),
    el("span", {}, el("b", {}, "reward"), el("span", { id: "v-reward" }, fmt(d.reward))),
    el("span", {}, el("b", {}, "score after"), fmt(d.score)),
    el("span", {}, el("b", {}, "bias applied"), d.bias_applied || "—"),
    ...Object.entries(d.notes || {}).map(([k, v]) => el("span", {}, el("b", {}, k === "v" ? "V̂" : k), fmt(v))),
    d.proposal_fallback ? el("span", { class: "warn" }, "proposal fallback: " + d.proposal_fallback) : null);
  const outcome = el("div", { class: "facts", id: "v-outcome" },
    el("span", {}, el("b", {}, "episode"), `${viewer.episode} (seed ${fmt(episode.seed)})`),
    el("span", {}, el("b", {}, "final score"), `${fmt(episode.score)} / ${fmt(episode.max_score)}`),
    el("span", { class: "badge " + (episode.success ? "ok" : "fail") }, episode.success ? "success" : "no success"),
    episode.status && episode.status !== "ok" ? el("span", { class: "warn" }, episode.status) : null,
    episode.answer !== null && episode.answer !== undefined ? el("span", {}, el("b", {}, "final answer"),
      el("span", { id: "v-answer" }, episode.answer)) : null,
    episode.final_url ? el("span", {}, el("b", {}, "final URL"), episode.final_url) : null);
  const piTheta = softmax(d.z);
  const advScale = Math.max(1e-9, ...(d.advantage || []).map((a) => Math.abs(a)));
  const rows = d.candidates.map((c, i) => el("tr", { class: i === d.index ? "chosen" : "", "data-index": i },
    el("td", { class: "num" }, i),
    el("td", { class: "wrap" }, c),
    el("td", { class: "num pi" }, bar(piTheta[i], "pi"), fmt(piTheta[i])),
    el("td", { class: "num z" }, fmt(d.z[i])),
    el("td", { class: "num adv" }, bar((d.advantage || [])[i], "adv", advScale), fmt((d.advantage || [])[i])),
    el("td", { class: "num zprime" }, fmt((d.z_prime || [])[i])),
    el("td", { class: "num star" }, bar((d.probs || [])[i], "star"), fmt((d.probs || [])[i]))));
  const candidates = el("table", { id: "v-candidates" }, el("thead", {}, el("tr", {},
    ["#", "candidate", "π_θ", "z = log π_θ", "Â", "z′", "π*"].map((h) => el("th", {}, h)))), el("tbody", {}, rows));
  const memory = (DATA.memory[viewer.run] || {})[viewer.agent] || {};
  const neighbours = el("table", { id: "v-neighbours" }, el("thead", {}, el("tr", {},
    ["similarity", "return", "action", "from", "state"].map((h) => el("th", {}, h)))),
    el("tbody", {}, (d.neighbours || []).map((n) => {
      const entry = memory[String(n.id)] || {};
      const origin = DATA.uids[entry.episode];
      const from = origin ? el("a", { class: "link", onclick: () => viewer.goto(origin[0], origin[1], origin[2], origin[3], entry.step) },
        `${origin[1]} · ${origin[2]} · episode ${origin[3]} · step ${entry.step}`) : (entry.episode ? "another run" : "");
      return el("tr", {}, el("td", { class: "num" }, fmt(n.similarity)), el("td", { class: "num" }, fmt(n.return)),
        el("td", { class: "wrap" }, n.action), el("td", {}, from),
        el("td", { class: "wrap" }, entry.state ? el("details", {}, el("summary", {}, entry.state.split("\n")[0].slice(0, 80)), el("pre", {}, entry.state)) : ""));
    })));
  return [outcome, facts, el("h3", {}, "Observation"), el("pre", { id: "v-observation" }, d.observation || "(not recorded)"),
    el("h3", {}, `Candidates (${d.candidates.length})`), el("div", { class: "scroll" }, candidates),
    el("h3", {}, `Neighbours from memory (${(d.neighbours || []).length})`),
    (d.neighbours || []).length ? el("div", { class: "scroll" }, neighbours) : el("p", { class: "hint" }, "none (this agent reads no memory, or memory had nothing near)")];
}

// ---- cost, frontier, provenance ----------------------------------------------------------------------------------

function costSection() {
  const section = document.getElementById("cost");
  const shown = ["run", "task", "agent", "model", "episodes", "steps", "llm_calls", "prompt_tokens", "completion_tokens",
    "embeddings", "wall_s", "compute_s", "gpu_s", "usd", "usd_per_episode", "priced_by"];
  const single = new Set(DATA.cost.map((r) => r.run)).size === 1;
  const columns = shown.filter((c) => !(single && c === "run") && (!DATA.cost.length || c in DATA.cost[0]));
  section.append(el("p", { class: "hint" }, "LLM calls and tokens of every purpose (acting, proposing, summarizing, evaluating, learning), texts embedded, wall and compute seconds, and dollars from the price table (configs/prices/). cost.csv splits calls and tokens by purpose."));
  section.append(sortableTable(DATA.cost, columns, "cost-table"));
  const purposes = ["acting", "proposing", "summarizing", "evaluating", "learning"];
  const split = DATA.cost.map((r) => Object.fromEntries([["agent", r.agent], ["task", r.task],
    ...purposes.flatMap((p) => [[`calls ${p}`, r[`calls_${p}`]], [`tokens ${p}`, (r[`prompt_${p}`] || 0) + (r[`completion_${p}`] || 0)]])]));
  section.append(el("details", {}, el("summary", {}, "by purpose"), sortableTable(split, Object.keys(split[0] || {}), "cost-purpose")));
  if (DATA.literature.length) {
    section.append(el("h3", {}, "Beside the literature (copied rows are labelled; ratios are computed from them)"),
      sortableTable(DATA.literature, Object.keys(DATA.literature[0]), "literature-table"));
  }
}

function frontierSection() {
  const section = document.getElementById("frontier");
  const images = DATA.images || {};
  if (images.frontier) section.append(el("img", { class: "plot", id: "frontier-img", src: images.frontier, alt: "cost/quality frontier" }));
  if (images.heatmap) section.append(el("h3", {}, "β × k"), el("img", { class: "plot", id: "heatmap-img", src: images.heatmap, alt: "beta x k heatmap" }));
  if (!images.frontier && !images.heatmap) section.append(el("p", {}, "Nothing to plot yet."));
}

function provenanceSection() {
  const section = document.getElementById("provenance");
  for (const run of DATA.runs) {
    const versions = Object.entries(run.versions || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
    section.append(el("h3", {}, run.name),
      el("div", { class: "facts" }, el("span", {}, el("b", {}, "run id"), run.run_id),
        el("span", {}, el("b", {}, "config hash"), run.config_hash),
        el("span", {}, el("b", {}, "memory from"), run.load_from || "this run only")),
      el("p", { class: "hint" }, versions),
      run.errors.length ? el("div", {}, el("b", { class: "warn" }, `${run.errors.length} errors`),
        el("ul", {}, run.errors.map((e) => el("li", {}, `${e.task} · ${e.agent} · episode ${e.episode}: ${e.error}`)))) : el("p", {}, "no errors"),
      el("details", {}, el("summary", {}, "config.yaml"), el("pre", {}, run.config)));
  }
}

document.getElementById("title").textContent = "jitrl-bench report: " + DATA.title;
document.getElementById("subtitle").textContent = `${DATA.runs.length} run(s) · ${DATA.episodes.length} episodes · generated ${DATA.generated}`;
summarySection();
comparisonSection();
curvesSection();
viewerSection();
costSection();
frontierSection();
provenanceSection();
