"""`jitrl-bench run` leaves report.html; real Chromium opens it from disk and the decision viewer shows the step files'
numbers. Cost accounting sums the per-call records and prices each purpose by its own model; `table --reference` sets a
run beside the paper's rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.prices import ModelPrice, PricesConfig
from jitrl_bench.results.cost import cost_table, episode_costs, literature_table, load_prices
from jitrl_bench.results.frontier import Point, pareto
from tests.envs.web.web_support import require_browser
from tests.report_page import open_report, report_data, varied_image

REPO = Path(__file__).resolve().parents[2]
FAST = ["policy=uniform", "run.progress=false"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    code, output = cli("run", *FAST, "run.episodes=3", "run.max_steps=5", f"run.dir={run_dir}")
    assert code == 0, output
    assert f"report: {run_dir / 'report.html'}" in output.replace("\n", "")
    return run_dir


def steps_of(run_dir: Path, task: str, agent: str, episode: int) -> list[dict]:
    path = run_dir / "steps" / task / agent / f"{episode}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_decision_viewer_shows_the_step_files_numbers(text_run: Path) -> None:
    require_browser()
    steps = steps_of(text_run, "tw-simple-7", "jitrl", 2)
    step = next(s for s in steps if s["decision"]["neighbours"])  # a step memory answered
    decision = step["decision"]
    with open_report(text_run / "report.html") as report:
        page = report.page
        for name, value in (("task", "tw-simple-7"), ("agent", "jitrl"), ("episode", "2"), ("step", str(step["step"]))):
            page.select_option(f"#v-{name}", value)  # the controls a person uses
        assert page.inner_text("#v-action") == step["action"]
        assert page.inner_text("#v-observation") == step["observation"]
        assert len(step["observation"]) > 0
        np.testing.assert_allclose(report.numbers("#v-candidates", 4), decision["z"], atol=6e-4)
        np.testing.assert_allclose(report.numbers("#v-candidates", 5), decision["advantage"], atol=6e-4)
        np.testing.assert_allclose(report.numbers("#v-candidates", 6), decision["z_prime"], atol=6e-4)
        np.testing.assert_allclose(report.numbers("#v-candidates", 7), decision["probs"], atol=6e-4)
        z = np.array(decision["z"])
        np.testing.assert_allclose(report.numbers("#v-candidates", 3), np.exp(z) / np.exp(z).sum(), atol=6e-4)
        assert report.cells("#v-candidates", 2) == decision["candidates"]
        chosen = page.locator("#v-candidates tbody tr.chosen")
        assert chosen.count() == 1 and chosen.get_attribute("data-index") == str(decision["index"])
        neighbours = decision["neighbours"]
        np.testing.assert_allclose(report.numbers("#v-neighbours", 1), [n["similarity"] for n in neighbours], atol=6e-4)
        np.testing.assert_allclose(report.numbers("#v-neighbours", 2), [n["return"] for n in neighbours], atol=6e-4)
        assert report.cells("#v-neighbours", 3) == [n["action"] for n in neighbours]
        # a neighbour's link opens the step it was stored from
        stored = (text_run / "memory" / "jitrl" / "entries.jsonl").read_text().splitlines()
        entries = {e["id"]: e for e in map(json.loads, stored)}
        source = entries[neighbours[0]["id"]]
        rows = [json.loads(line) for line in (text_run / "episodes.jsonl").read_text().splitlines()]
        origin = next(r for r in rows if r["episode_uid"] == source["episode"])
        page.locator("#v-neighbours tbody tr").first.locator("a").click()
        assert page.input_value("#v-episode") == str(origin["episode"])
        assert page.input_value("#v-step") == str(source["step"])
        assert (
            page.inner_text("#v-action")
            == steps_of(text_run, "tw-simple-7", "jitrl", origin["episode"])[source["step"]]["action"]
        )
        assert varied_image(report.screenshot("#viewer"))
        # the summary table sorts by a clicked column
        page.click("#summary-table th:has-text('mean_score')")
        column = list(pd.read_csv(text_run / "summary.csv").columns).index("mean_score") + 1
        shown = [float(v) for v in report.cells("#summary-table", column)]
        assert shown == sorted(shown)
        assert report.errors == []


def test_report_holds_cost_provenance_and_a_frontier(text_run: Path) -> None:
    data = report_data(text_run / "report.html")
    episodes = [json.loads(line) for line in (text_run / "episodes.jsonl").read_text().splitlines()]
    assert len(data["episodes"]) == len(episodes) == 6
    (run,) = data["runs"]
    config = (text_run / "config.yaml").read_text()
    assert run["config"] == config and run["config_hash"] in config and run["versions"]["jitrl-bench"]
    cost = {row["agent"]: row for row in data["cost"]}
    jitrl = [e for e in episodes if e["agent"] == "jitrl"]
    # a state seen before is not embedded again (text games revisit states; both agents see the first one)
    assert 0 < cost["jitrl"]["embeddings"] == sum(e["embeddings"] for e in jitrl) <= sum(e["steps"] for e in jitrl)
    assert cost["static"]["embeddings"] == 0  # the frozen policy reads no memory
    assert cost["jitrl"]["priced_by"] == "no LLM calls" and cost["jitrl"]["usd"] == 0
    assert math.isclose(cost["jitrl"]["wall_s"], sum(e["wall_s"] for e in jitrl), abs_tol=0.02)
    assert (text_run / "frontier.png").stat().st_size > 5000 and data["images"]["frontier"].startswith("data:image/png")
    literature = {row["method"]: row for row in data["literature"]}
    ratio = next(k for k in literature["JitRL (paper, API calls)"] if k.endswith("/ this"))
    assert literature["JitRL (paper, API calls)"][ratio] == round(9900 / 290, 1)  # the paper's "over 30×", computed
    assert literature["WebRL (Llama-3.1 training)"]["origin"].startswith("copied:")
    summary_md = (text_run / "summary.md").read_text()
    assert "## Cost" in summary_md and "embeddings" in summary_md


def test_prices_apply_per_model_and_gpu_time_when_no_token_price() -> None:
    prices = PricesConfig(models={"acting-model": ModelPrice(1.0, 4.0), "judge": ModelPrice(10.0, 20.0)}, gpu_hour=3.6)
    base = {"task": "t", "agent": "a", "policy": "acting-model", "status": "ok", "steps": 2, "llm_calls": 3,
            "prompt_tokens": 3000, "completion_tokens": 300, "wall_s": 4.0, "compute_s": 2.0, "embeddings": 2,
            "hardware": "api"}  # fmt: skip
    rows = pd.DataFrame([
        {**base, "calls_by_purpose": {"acting": 2, "evaluating": 1},
         "prompt_tokens_by_purpose": {"acting": 1000, "evaluating": 2000},
         "completion_tokens_by_purpose": {"acting": 100, "evaluating": 200},
         "model_by_purpose": {"acting": "acting-model", "evaluating": "openai/judge"}},
        {**base, "policy": "local", "hardware": "gpu", "calls_by_purpose": {"acting": 2}, "seconds": {"llm": 1.5},
         "prompt_tokens_by_purpose": {"acting": 1000}, "completion_tokens_by_purpose": {"acting": 100},
         "model_by_purpose": {"acting": "local"}},
        {**base, "policy": "local", "hardware": "cpu", "calls_by_purpose": {"acting": 2},
         "prompt_tokens_by_purpose": {"acting": 1000}, "completion_tokens_by_purpose": {"acting": 100},
         "model_by_purpose": {"acting": "local"}},
    ])  # fmt: skip
    costed = episode_costs(rows, prices)
    acting, evaluating = (1000 * 1.0 + 100 * 4.0) / 1e6, (2000 * 10.0 + 200 * 20.0) / 1e6
    assert math.isclose(costed.usd[0], acting + evaluating) and costed.priced_by[0] == "tokens"
    assert math.isclose(costed.usd[1], 1.5 / 3600 * 3.6) and costed.priced_by[1] == "gpu time"  # the model's own time
    assert math.isnan(costed.usd[2]) and costed.priced_by[2] == "not priced (local on cpu)"
    assert list(costed.gpu_s) == [0.0, 1.5, 0.0]
    table = cost_table(rows.assign(agent=["api", "gpu", "cpu"]), prices).set_index("agent")
    assert table.loc["api", "calls_evaluating"] == 1 and table.loc["api", "prompt_evaluating"] == 2000
    assert math.isnan(table.loc["cpu", "usd"])
    copied = literature_table(load_prices(), table.reset_index())
    assert copied.iloc[0]["origin"].startswith("copied:") and "measured" in copied.iloc[-1]["origin"]


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [Point("a", 1, 0.2), Point("b", 2, 0.1), Point("c", 2, 0.5), Point("d", 3, 0.5), Point("e", 0, 0.0)]
    assert [p.label for p in pareto(points)] == ["e", "a", "c"]


def test_tables_piped_to_a_file_keep_each_row_on_one_line(text_run: Path) -> None:
    """`jitrl-bench table RUN > file` (a log, CI) with $COLUMNS unset: one line per row. Mutant (tried): the CLI's
    console at Rich's default 80 columns wraps the row for jitrl over three lines, and this fails."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    shown = subprocess.run([sys.executable, "-m", "jitrl_bench", "table", str(text_run)], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│ jitrl ")]
    assert rows and "[" in rows[0] and "]" in rows[0], shown.stdout  # the summary row: the mean and its interval


def test_bad_prices_are_one_line_before_anything_loads(tmp_path: Path, text_run: Path) -> None:
    code, output = cli("run", *FAST, "prices.models.gpt-5-mini.input=-1", f"run.dir={tmp_path / 'r'}")
    assert code == 2 and "prices.models.gpt-5-mini.input=-1" in output and not (tmp_path / "r").exists()
    bad = tmp_path / "p.yaml"
    bad.write_text("models: {m: {input: 1, output: -2}}\n")
    code, output = cli("report", str(text_run), "--prices", str(bad), "-o", str(tmp_path / "x.html"))
    assert code == 2 and "prices.models.m.output=-2" in output and len(output.strip().splitlines()) == 1
    code, output = cli("report", str(text_run), "-o", str(tmp_path / "x.txt"))
    assert code == 2 and "*.html" in output


def test_table_reference_sets_a_jericho_run_beside_the_paper(tmp_path: Path) -> None:
    games = os.environ.get("JITRL_BENCH_GAMES") or str(REPO.parent / "shared" / "jericho-games")
    if not Path(games, "zork1.z5").exists():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    run_dir = tmp_path / "zork"
    code, output = cli("run", *FAST, "env=jericho", "env.game=zork1", f"env.rom_dir={games}", "run.episodes=2",
                       "run.max_steps=4", f"run.dir={run_dir}")  # fmt: skip
    assert code == 0, output
    shown = CliRunner().invoke(app, ["table", str(run_dir), "--reference"], env={"COLUMNS": "200"})  # no wrapping
    code, output = shown.exit_code, shown.output
    assert code == 0, output
    from jitrl_bench.reproduce import reference_table

    frame = reference_table(run_dir)
    mine = pd.read_json(run_dir / "episodes.jsonl", lines=True)
    jitrl = frame[(frame["ours: agent"] == "jitrl") & (frame.setting == "zork1 (50 steps)")]
    assert list(jitrl.paper) == [53.0] and list(jitrl.ours) == [round(mine[mine.agent == "jitrl"].score.mean(), 2)]
    assert set(frame.benchmark) == {"Jericho"} and set(frame.setting.str.split(" ").str[0]) == {"zork1"}
    assert "zork1 (50 steps)" in output and "beside the paper" in output
    # ours with its interval over the two episodes, and whether the paper's 53 lies in it (4 steps: it cannot)
    assert list(jitrl["interval over"]) == ["2 episodes"] and list(jitrl["paper inside"]) == ["no"]
    assert jitrl["ours 95%"].iloc[0].startswith("[") and "paper inside" in output


@pytest.mark.slow
def test_a_sweep_report_has_seed_bands_and_the_beta_k_heatmap(tmp_path: Path) -> None:
    require_browser()
    sweep_dir = tmp_path / "sweep"
    code, output = cli("sweep", *FAST, "agent.beta=0.5,2", "agent.k=5,10", "run.seed=0,1", "run.episodes=2",
                       "run.max_steps=3", f"run.dir={sweep_dir}")  # fmt: skip
    assert code == 0, output
    assert f"report: {sweep_dir / 'report.html'}" in output.replace("\n", "")
    data = report_data(sweep_dir / "report.html")
    assert len(data["runs"]) == 8 and {"agent.beta", "agent.k", "run.seed"} <= set(data["varying"])
    summary = pd.DataFrame(data["summary"])
    from jitrl_bench.results.frontier import heatmap_grid

    score, count = heatmap_grid(summary, "jitrl", "agent.beta", "agent.k")
    assert count.to_numpy().tolist() == [[2, 2], [2, 2]]  # two seeds per (β, k) cell
    cell = summary[(summary.agent == "jitrl") & (summary["agent.beta"] == 2.0) & (summary["agent.k"] == 10)]
    assert math.isclose(score.loc[2.0, 10], cell.norm_score.mean())
    assert (sweep_dir / "heatmap.png").stat().st_size > 5000 and "heatmap" in data["images"]
    with open_report(sweep_dir / "report.html") as report:
        page = report.page
        assert page.locator("#curves svg").count() == 1  # one task
        assert page.locator("#curves svg polygon").count() == 8  # a seed band per agent × (β, k)
        assert page.eval_on_selector("#heatmap-img", "img => img.naturalWidth") > 0
        assert page.locator("#summary-table tbody tr").count() == 16
        assert page.locator("#v-run option").count() == 8
        assert report.errors == []
