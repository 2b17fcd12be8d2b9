"""A run directory from elsewhere is data: `report`, `table`, `merge` and `regrade` read crafted copies of one small
real run (policy=uniform, TextWorld, one short episode): they leak nothing, follow no link, print messages literally.

Each test names the mutant it catches; each was tried once by hand."""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from jitrl_bench.cli import app

SECRET = "sk-test-secret"
FAST = ["policy=uniform", "run.progress=false", "run.episodes=1", "run.max_steps=3"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def one_clear_line(code: int, output: str, message: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert re.search(message, output.replace("\n", "")), f"{message!r} not in {output!r}"


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run, a shard (run.shard=0/2) so that `merge` takes it too; each test copies it."""
    run_dir = tmp_path_factory.mktemp("received") / "run"
    code, output = cli("run", *FAST, "run.shard=0/2", f"run.dir={run_dir}")
    assert code == 0, output
    return run_dir


@pytest.fixture
def received(shard: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "received"
    shutil.copytree(shard, copy)
    return copy


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def edit_config(run_dir: Path, change: Any) -> None:
    path = run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_report_never_resolves_interpolations(received: Path, secret_env: None) -> None:
    """A price row holding `${oc.env:OPENAI_API_KEY}` is shown as that text; the reader's key is nowhere in the page.
    Mutant: `received._escaped` leaving strings as they are (OmegaConf resolves them when the price table is built)
    -> the key is in report.html."""
    row = {"method": "${oc.env:OPENAI_API_KEY}", "usd": 1.0, "source": "${oc.env:OPENAI_API_KEY}"}
    edit_config(received, lambda c: c["prices"].__setitem__("literature", [row]))
    code, output = cli("report", str(received))
    assert code == 0, output
    page = (received / "report.html").read_text()
    assert SECRET not in page and "${oc.env:OPENAI_API_KEY}" in page
    code, output = cli("table", str(received))
    assert code == 0 and SECRET not in output and SECRET not in (received / "summary.md").read_text(), output


def test_a_foreign_target_is_not_imported(received: Path) -> None:
    """Only jitrl_bench's own classes are built from a run's config. Mutant: `buildable` without `_check_targets`
    -> `os.system` is imported and typed, the error is not about the target (or the report is written)."""
    edit_config(received, lambda c: c["prices"].__setitem__("_target_", "os.system"))
    one_clear_line(*cli("report", str(received)), r"prices\._target_='os\.system'.*is not a jitrl-bench class")


class Listener(http.server.BaseHTTPRequestHandler):
    """A judge (OpenAI-compatible chat endpoint): keeps every request, answers "correct"."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append({"host": self.headers.get("Host"), "auth": self.headers.get("Authorization"),
                                "body": body.decode()})  # fmt: skip
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "correct"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def listeners() -> Iterator[tuple[str, str]]:
    """Two judges on 127.0.0.1: the one a received run's config names, and the reader's own."""
    Listener.seen = []
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}/v1" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


def as_web_run(run_dir: Path, judge_url: str) -> None:
    """The copy turned into a WebArena run of task 173 (fuzzy_match: needs the LLM judge) whose config names a judge."""
    if importlib.util.find_spec("webarena.evaluation_harness") is None:
        pytest.skip("needs the web extra (libwebarena): make setup")
    env = {"_target_": "jitrl_bench.envs.web.webarena.original.WebArenaConfig", "tasks": [173],
           "urls": {"gitlab": "http://127.0.0.1:9"},
           "judge": {"base_url": judge_url, "api_key_env": "OPENAI_API_KEY", "model": "run-model"}}  # fmt: skip
    edit_config(run_dir, lambda c: c.__setitem__("env", env))
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    artifacts = {"task_id": 173, "answer": "done", "har": "", "urls": {"gitlab": "http://127.0.0.1:9"},
                 "final_url": "http://127.0.0.1:9"}  # fmt: skip
    rows = [{**r, "task": "173", "env": "webarena", "status": "ok", "artifacts": artifacts} for r in rows]
    (run_dir / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_regrade_asks_the_readers_judge_never_the_runs(
    received: Path, listeners: tuple[str, str], secret_env: None
) -> None:
    """The run's config names a judge (and the key variable): it receives nothing; the judge given on the command line
    gets the question, with the reader's key. Mutant: `regrade` keeps `env.judge` from the run's config (no pop, no
    `_use_judge`) -> the run's listener receives the request with `Bearer sk-test-secret`."""
    runs_judge, readers_judge = listeners
    as_web_run(received, runs_judge)
    code, output = cli("regrade", str(received), "--judge-url", readers_judge)
    assert code == 0 and "1 episodes: 0 grades differ" in output, output
    asked = [s for s in Listener.seen if f"//{s['host']}/" in readers_judge]
    assert asked and asked[0]["auth"] == f"Bearer {SECRET}" and '"model": "run-model"' in asked[0]["body"]
    assert [s for s in Listener.seen if f"//{s['host']}/" in runs_judge] == []


def plant(run_dir: Path, outside: Path, command: str) -> tuple[Path, list[str]]:
    """A link inside the run where the command reads or writes; the link and the command line."""
    target = outside / "precious"
    if command == "merge":
        target.mkdir()
        (target / "private.txt").write_text("keep out")
        link = run_dir / "har"
    else:
        target.write_text("keep out")
        link = run_dir / {"report": "frontier.png", "table": "summary.md", "regrade": "regrade.csv"}[command]
        link.unlink(missing_ok=True)
    link.symlink_to(target)
    args = {"merge": ["merge", str(run_dir), "-o", str(outside / "merged")]}.get(command, [command, str(run_dir)])
    return link, args


@pytest.mark.parametrize("command", ["report", "table", "merge", "regrade"])
def test_a_link_inside_a_run_is_refused(
    received: Path, tmp_path: Path, command: str, listeners: tuple[str, str]
) -> None:
    """Each command refuses the run in one line naming the link; what it points to is unchanged, nothing copied.
    Mutant: drop `check_run` from that command (cli.table / write_report / read_shard / regrade) -> it exits 0 (table
    and the old report also wrote through the link; merge copied the outside folder into the merged run)."""
    if command == "regrade":
        as_web_run(received, listeners[0])
    outside = tmp_path / "outside"
    outside.mkdir()
    link, args = plant(received, outside, command)
    one_clear_line(*cli(*args), rf"{re.escape(str(link))} is a symbolic link inside the run")
    target = outside / "precious"
    if command == "merge":
        assert sorted(p.name for p in target.iterdir()) == ["private.txt"] and not (outside / "merged" / "har").exists()
    else:
        assert target.read_text() == "keep out"


def test_a_planted_link_at_the_output_is_replaced_not_followed(received: Path, tmp_path: Path) -> None:
    """`report -o` into a folder where report.html, its images and the old temp name are links to files outside:
    the links are replaced by the new files, their targets unchanged. Mutant: `write_file` as `path.write_bytes(raw)`
    (or the old `out.with_suffix(".tmp").write_text`, savefig to the path) -> the targets are overwritten."""
    out = tmp_path / "reports"
    out.mkdir()
    targets = []
    for name in ("report.html", "report.tmp", "frontier.png"):
        target = tmp_path / f"target-{name}"
        target.write_text("keep out")
        (out / name).symlink_to(target)
        targets.append(target)
    code, output = cli("report", str(received), "-o", str(out / "report.html"))
    assert code == 0, output
    assert [t.read_text() for t in targets] == ["keep out"] * 3
    assert not (out / "report.html").is_symlink() and "<html" in (out / "report.html").read_text()
    assert not (out / "frontier.png").is_symlink() and (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_files_replace_a_link_planted_after_the_check(received: Path, tmp_path: Path) -> None:
    """`table` refuses a run holding links, but one can appear between that check and the writes: write_summary
    replaces links at its outputs, never writes through them. Mutant: `to_csv(path)` / `write_text` / savefig to
    the path -> the targets outside the run are overwritten."""
    from jitrl_bench.results.tables import write_summary

    targets = []
    for name in ("summary.csv", "cost.csv", "summary.md", "curve.png"):
        target = tmp_path / f"target-{name}"
        target.write_text("keep out")
        (received / name).unlink(missing_ok=True)
        (received / name).symlink_to(target)
        targets.append(target)
    write_summary(received)
    assert [t.read_text() for t in targets] == ["keep out"] * 4
    assert not any((received / name).is_symlink() for name in ("summary.csv", "cost.csv", "summary.md", "curve.png"))
    assert (received / "summary.csv").read_text().startswith("task,agent") and (received / "curve.png").is_file()


def test_oversized_or_binary_files_are_one_line(received: Path) -> None:
    """A config.yaml past its cap, or not UTF-8: one line naming it. Mutant: `read_text` decoding with
    errors="replace" (or no cap) -> the report is written from it."""
    config = received / "config.yaml"
    original = config.read_bytes()
    config.write_bytes(original + b"# \xff\xfe\n")
    one_clear_line(*cli("report", str(received)), rf"{re.escape(str(config))} is not UTF-8 text")
    config.write_bytes(original + b"#" * (16 * 2**20) + b"\n")
    one_clear_line(*cli("report", str(received)), rf"{re.escape(str(config))} is larger than 16 MiB")


def test_messages_print_literally(received: Path, tmp_path: Path) -> None:
    """An error quoting a received run's text with `[/x]`, `[link=http://x]` and an escape sequence (here a shard's
    config hash) prints it as text: no MarkupError, no link, no escape code reaches the terminal. Mutant: `say`
    printing `f"[red]error:[/red] {text}"` as markup (the old `err.print`) -> MarkupError (a traceback, exit 1); with
    the markup off but `plain` not applied, the ESC byte reaches the output."""
    other = tmp_path / "other"
    shutil.copytree(received, other)
    crafted = "[/x] [link=http://x]here[/link] \x1b[31mred"
    edit_config(other, lambda c: c["_meta"].__setitem__("config_hash", crafted))
    code, output = cli("merge", str(received), str(other), "-o", str(tmp_path / "merged"))
    one_clear_line(code, output, r"are shards of different runs")
    assert "[/x] [link=http://x]here[/link] [31mred" in output.replace("\n", "") and "\x1b" not in output
