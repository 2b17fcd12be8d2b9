"""Bad input, tried as a new user would: one line naming the key (or the file) and what is allowed, exit 2, and
nothing expensive loaded first. The loaders of models, embedders, games and browsers are replaced by tripwires, so a
bad value that slipped past validation fails the test instead of loading something."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app

REPO = Path(__file__).resolve().parents[1]
GAMES = os.environ.get("JITRL_BENCH_GAMES") or str(REPO.parent / "shared" / "jericho-games")


class Loaded(Exception):
    """Something expensive was about to load: validation came too late."""


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from jitrl_bench.envs import browser, text_game
    from jitrl_bench.jitrl import embed
    from jitrl_bench.policies import hf, models, openai, vllm

    def trip(what: str):  # type: ignore[no-untyped-def]
        def loader(*args: object, **kwargs: object) -> None:
            raise Loaded(what)

        return loader

    monkeypatch.setattr(hf.HFPolicy, "__init__", trip("transformers model"))
    monkeypatch.setattr(vllm.VLLMPolicy, "__init__", trip("vLLM engine"))
    monkeypatch.setattr(openai.OpenAIPolicy, "__init__", trip("OpenAI client / vLLM server"))
    monkeypatch.setattr(models, "_convert_gguf", trip("GGUF conversion"))
    monkeypatch.setattr(embed.SentenceTransformerEmbedder, "__init__", trip("embedder"))
    monkeypatch.setattr(text_game.TextGameEnv, "__init__", trip("game"))
    monkeypatch.setattr(browser.Browser, "__init__", trip("browser"))
    yield


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, Loaded):
        pytest.fail(f"{args}: loaded a {result.exception} before rejecting the input")
    return result.exit_code, result.output


def one_clear_line(code: int, output: str, message: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert re.search(message, output), f"{message!r} not in {output!r}"


# (override, the one line must match) for every knob with a range or a closed set, group by group
KNOBS = [
    # run
    ("run.episodes=0", r"run\.episodes=0: must be >= 1"),
    ("run.max_steps=-3", r"run\.max_steps=-3: must be >= 1"),
    ("run.seed=-1", r"run\.seed=-1: must be >= 0"),
    ("run.temperature=-0.5", r"run\.temperature=-0\.5: must be >= 0"),
    ("run.concurrency=0", r"run\.concurrency=0: must be >= 1"),
    ("run.infra_retries=-1", r"run\.infra_retries=-1: must be >= 0"),
    ("run.executor=spark", r"run\.executor=spark: choose one of local, ray"),
    ("run.shard=2/2", r"run\.shard=2/2: i/n needs 0 <= i < n \(got i=2, n=2\)"),
    ("run.shard=half", r"run\.shard=half: i/n, e\.g\. 0/4 for the first of four shards"),
    ("run.ray.address=headnode", r"run\.ray\.address=headnode: auto, HOST:PORT"),
    ("run.ray.workers=0", r"run\.ray\.workers=0: must be >= 1"),
    ("run.ray.retries=-1", r"run\.ray\.retries=-1: must be >= 0"),
    ("run.ray.shared_memory=shared", r"run\.ray\.shared_memory=shared: choose one of stream, service"),
    ("run.shard=0/2 run.executor=ray run.ray.shared_memory=service", r"run\.shard=0/2: shards cannot share a memory"),
    ("run.baselines=[nobody]", r"run\.baselines: unknown agent 'nobody'; choose from awm, full_history, jitrl, "),
    # the in-context baselines
    ("run.baselines=[awm] baselines.awm.scope=page", r"baselines\.awm\.scope=page: choose one of site, task, all"),
    ("run.baselines=[awm] baselines.awm.examples=0", r"baselines\.awm\.examples=0: must be >= 1"),
    ("run.baselines=[awm] baselines.awm.success=maybe", r"baselines\.awm\.success=maybe: choose one of won, "),
    ("agent=full_history agent.max_tokens=8", r"agent\.max_tokens=8: must be >= 32"),
    ("agent=reflexion agent.window=0", r"agent\.window=0: must be >= 1"),
    ("agent=prompt_update agent.shown=0", r"agent\.shown=0: must be >= 1"),
    ("agent=webrl agent.max_chars=10", r"agent\.max_chars=10: must be >= 256"),
    ("agent=webrl agent.max_parse_failures=0", r"agent\.max_parse_failures=0: must be >= 1"),
    ("agent=webrl agent.max_repeats=1", r"agent\.max_repeats=1: must be >= 2"),
    ("agent=reasoning_bank agent.min_similarity=2", r"agent\.min_similarity=2(\.0)?: must be in \[-1(\.0)?, 1(\.0)?\]"),
    ("reward.success_reward=nan", r"reward\.success_reward=nan: must be a finite number"),
    ("reward=llm reward.scale=0", r"reward\.scale=0(\.0)?: must be > 0"),
    ("reward=llm reward.max_new_tokens=3", r"reward\.max_new_tokens=3: must be >= 16"),
    (
        "reward=llm reward.policy={_target_:jitrl_bench.policies.openai.OpenAIPolicyConfig,mode:x}",
        r"reward\.policy\.mode=x: choose one of score, choice, verbalized",
    ),
    ("agent.propose.mode=guess", r"agent\.propose\.mode=guess: choose one of none, verbalized, token"),
    ("agent.propose.k=0", r"agent\.propose\.k=0: must be in \[1, 20\]"),
    ("agent.propose.outside=maybe", r"agent\.propose\.outside=maybe: choose one of keep, drop"),
    ("agent.summary.mode=gpt", r"agent\.summary\.mode=gpt: choose one of none, llm"),
    ("agent.summary.steps_shown=0", r"agent\.summary\.steps_shown=0: must be in \[1, 200\]"),
    ("run.episodes=abc", r"run\.episodes"),
    # agent
    ("agent.beta=0", r"agent\.beta=0(\.0)?: must be > 0"),
    ("agent.beta=-1", r"agent\.beta=-1(\.0)?: must be > 0"),
    ("agent.k=0", r"agent\.k=0: must be >= 1"),
    ("agent.gamma=1.5", r"agent\.gamma=1\.5: must be in \[0, 1\]"),
    ("agent.threshold=2", r"agent\.threshold=2(\.0)?: must be in \[-1, 1\]"),
    ("agent.bonus=-0.1", r"agent\.bonus=-0\.1: must be >= 0"),
    ("agent.name=../x", r"agent\.name=\.\./x: use letters"),
    ("agent.estimator=x", r"unknown key 'agent\.estimator'"),
    ("agent.betta=1", r"unknown key 'agent\.betta'"),
    ("agent=jitrll", r"unknown agent 'jitrll': choose one of awm, full_history, jitrl, "),
    # the paper profile
    ("agent=jitrl_paper agent.paper.exploration=2", r"agent\.paper\.exploration=2(\.0)?: must be in \[0, 1\]"),
    ("agent=jitrl_paper agent.paper.w_ramp=-1", r"agent\.paper\.w_ramp=-1: must be >= 0"),
    ("agent=jitrl_paper agent.lexical.n=0", r"agent\.lexical\.n=0: must be >= 1"),
    ("agent=jitrl_paper agent.lexical.keep_above=3", r"agent\.lexical\.keep_above=3(\.0)?: must be in \[0, 1\]"),
    # memory
    ("memory.index.approximate=lsh", r"memory\.index\.approximate=lsh: choose one of hnsw, ivf"),
    ("memory.index.hnsw_m=1", r"memory\.index\.hnsw_m=1: must be >= 2"),
    ("memory.index.gpu=yes", r"memory\.index\.gpu=yes: choose one of auto, off"),
    ("memory.embedder.device=tpu", r"memory\.embedder\.device=tpu: use cpu, cuda"),
    ("memory.embedder.name=nonsense", r"memory\.embedder\.name=nonsense: use minilm, hashing"),
    ("memory.load_from=/no/such/run", r"memory\.load_from=/no/such/run: no such folder"),
    # policy
    ("policy=nosuch", r"unknown policy 'nosuch': choose one of hf, openai, smollm2, uniform, vllm"),
    ("policy.dtype=float8", r"policy\.dtype=float8: choose one of auto, float32, bfloat16"),
    ("policy.scorer=fast", r"policy\.scorer=fast: choose one of one_pass, shared_prefix, padded"),
    ("policy.pass_tokens=4", r"policy\.pass_tokens=4: must be >= 16"),
    ("policy.prefix_cache=-1", r"policy\.prefix_cache=-1: must be >= 0"),
    ("prices.gpu_hour=-2", r"prices\.gpu_hour=-2(\.0)?: use USD per GPU-hour, 0 or more"),
    ("prices.literature.0.usd=-5", r"prices\.literature\[0\]\.usd=-5(\.0)?: use a dollar amount, 0 or more"),
    ("prices.literature.1.method=''", r"prices\.literature\[1\]\.method='': every copied cost needs a method"),
    ("prices.models.gpt-5.output=-1", r"prices\.models\.gpt-5\.output=-1(\.0)?: use a price in USD per million"),
    ("policy.device=tpu", r"policy\.device=tpu: use cpu, cuda"),
    ("policy.max_prompt_tokens=0", r"policy\.max_prompt_tokens=0: must be >= 16"),
    ("policy=hf policy.model=/no/such/model", r"policy\.model=/no/such/model: policy model folder not found"),
    ("policy=vllm policy.mode=logits", r"policy\.mode=logits: choose one of score, choice"),
    ("policy=vllm policy.max_model_len=100", r"policy\.max_model_len=100: must be >= 1040"),
    ("policy=vllm policy.gpu_memory_utilization=2", r"policy\.gpu_memory_utilization=2(\.0)?: must be in"),
    ("policy=vllm policy.model_runner=v3", r"policy\.model_runner=v3: choose one of v1, v2"),
    ("policy=openai policy.mode=logits", r"policy\.mode=logits: choose one of score, choice, verbalized"),
    ("policy=openai policy.base_url=ftp://host", r"policy\.base_url=ftp://host: must be an http"),
    ("policy=openai policy.server=remote", r"policy\.server=remote: choose one of none, auto"),
    ("policy=openai policy.max_concurrency=0", r"policy\.max_concurrency=0: must be >= 1"),
    ("policy=openai policy.timeout_s=0", r"policy\.timeout_s=0(\.0)?: must be >= 0\.1"),
    ("policy=openai policy.max_reply_mb=0", r"policy\.max_reply_mb=0(\.0)?: must be > 0"),
    ("env=miniwob env.step_timeout_s=0", r"env\.step_timeout_s=0(\.0)?: must be in \[1, 3600\]"),
    ("env=webarena_verified env.max_candidates=0", r"env\.max_candidates=0: must be >= 1"),
    ("policy=openai policy.logprobs_mode=both", r"policy\.logprobs_mode=both: choose one of auto, raw, processed"),
    ("policy=openai policy.response_format=xml", r"policy\.response_format=xml: choose one of json_schema"),
    ("policy=openai policy.api_key_env=sk-abc123", r"policy\.api_key_env=\*\*\*: give the NAME"),
    ("policy=openai policy.api_key_env=JITRL_NOT_SET_ANYWHERE", r"\$JITRL_NOT_SET_ANYWHERE is not set"),
    # env
    ("env=nosuchenv", r"unknown env 'nosuchenv': choose one of jericho, "),
    ("env.kind=huge", r"env\.kind=huge: choose one of simple, custom"),
    ("env.seeds=[]", r"env\.seeds=\[\]: give at least one"),
    ("env.rewards=lots", r"env\.rewards=lots: choose one of dense, balanced, sparse"),
    ("env.world_size=0", r"env\.world_size=0: must be >= 1"),
    ("env=jericho env.rom_dir=/no/such/folder", r"env\.rom_dir=/no/such/folder: no such folder"),
    ("env=jericho env.spacy_model=en_nope", r"env\.spacy_model=en_nope: not installed"),
    ("env=miniwob env.tasks=[click-buton]", r"env\.tasks=click-buton: not a MiniWoB\+\+ task; did you mean"),
    ("env=webarena_verified env.subset=easy", r"env\.subset=easy: choose one of all, hard, non-hard"),
    ("env=webarena env.login=sso", r"env\.login=sso: choose one of ui, header, none"),
    ("env=webarena env.reset=always", r"env\.reset=always: choose one of none, run, task"),
    ("env=webarena env.judge.timeout_s=0", r"env\.judge\.timeout_s=0(\.0)?: must be >= 0\.1"),
    # syntax
    ("agent.beta==", r"cannot parse override"),
]


@pytest.mark.parametrize(("override", "message"), KNOBS, ids=[k for k, _ in KNOBS])
def test_bad_value_is_one_line_before_anything_loads(
    override: str, message: str, tripwires: None, tmp_path: Path
) -> None:
    games = [f"env.rom_dir={GAMES}"] if "env=jericho" in override and "rom_dir" not in override else []
    code, output = cli("run", *override.split(), *games, "run.progress=false", f"run.dir={tmp_path / 'r'}")
    one_clear_line(code, output, message)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing written either


def test_every_knob_with_a_closed_set_or_range_is_covered() -> None:
    """A new knob with a range or closed set needs a row in KNOBS: the config dataclasses' check() calls are counted
    against the keys the table exercises."""
    import ast

    tested = {override.split()[-1].split("=")[0].split(".")[-1] for override, _ in KNOBS}
    checked: set[str] = set()
    for path in (REPO / "jitrl_bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "check":
                for call in ast.walk(node):
                    named = isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in HELPERS
                    if named and call.args and isinstance(call.args[0], ast.Constant):
                        checked.add(str(call.args[0].value))
    untested = sorted(checked - tested - TESTED_BELOW - UNTESTED_ON_PURPOSE)
    assert untested == [], f"knobs checked in code but not tried here: {untested}"


HELPERS = {"one_of", "each_one_of", "at_least", "above", "between", "finite", "name", "env_var_name", "http_url",
           "non_empty", "check_model", "BadValue"}  # fmt: skip
TESTED_BELOW = {"compare", "metric"}  # the reproduce section: test_reproduce_checks_its_setting_before_anything_loads
UNTESTED_ON_PURPOSE = {
    # same helper and message as a tested sibling; listed so the coverage check above stays exact
    "name", "failure_reward", "nb_objects", "quest_length", "goal", "hnsw_ef_construction", "hnsw_ef_search",
    "ivf_nprobe", "exact_below", "threads", "kv_cache_gb", "seed", "alpha", "w_start", "w_end", "recall",
    "unigram_weight", "ngram_weight", "threshold_start", "threshold_end", "decay_steps", "backoff_s", "max_retries",
    "verbalized_max_tokens", "partition_by", "tokenizer", "sites", "urls", "oracle_stop", "game", "failure_last",
    "cpus_per_worker", "gpus_per_worker",
}  # fmt: skip


# ---- beyond configs: folders and files that are not what they claim -------------------------------------------


def test_run_dir_that_is_a_file_or_unwritable(tripwires: None, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_clear_line(*cli("run", f"run.dir={afile}"), r"run\.dir=.*afile is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): the permission cannot be taken away")
        one_clear_line(*cli("run", f"run.dir={locked / 'r'}"), r"cannot be written")
    finally:
        locked.chmod(0o700)


def test_run_dir_holding_something_else(tripwires: None, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my thesis")
    one_clear_line(*cli("run", f"run.dir={tmp_path}"), r"is not empty and holds no jitrl-bench run")
    assert (tmp_path / "notes.txt").read_text() == "my thesis"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("_meta: [unclosed")
    one_clear_line(*cli("run", f"run.dir={broken}"), r"config\.yaml is not a jitrl-bench run config")


def test_corrupt_line_in_episodes_is_named_and_nothing_is_lost(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    args = ["run", "policy=uniform", "run.episodes=2", "run.max_steps=2", "run.progress=false", f"run.dir={run_dir}"]
    assert cli(*args)[0] == 0
    log = run_dir / "episodes.jsonl"
    lines = log.read_text().splitlines()
    damaged = [lines[0], '{"task": "tw-simple-7", "episode": 1, "agent"', *lines[2:]]  # a middle line cut
    log.write_text("\n".join(damaged) + "\n")
    before = log.read_bytes()
    one_clear_line(*cli("table", str(run_dir)), r"episodes\.jsonl line 2 is not an episode record")
    one_clear_line(*cli(*args), r"episodes\.jsonl line 2 is not an episode record.*delete that line")
    assert log.read_bytes() == before  # a refused resume writes nothing
    log.write_text("\n".join([*lines[:1], *lines[2:]]) + "\n")  # the fix the message names: delete the line
    code, output = cli(*args)
    assert code == 0, output
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((r["agent"], r["episode"]) for r in rows) == [(a, e) for a in ("jitrl", "static") for e in (0, 1)]


def test_folders_with_nothing_to_check(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    one_clear_line(*cli("table", str(empty)), r"neither a run directory")
    one_clear_line(*cli("table", str(tmp_path / "missing")), r"no such run directory")
    one_clear_line(*cli("regrade", str(empty)), r"not a run directory \(no config\.yaml\)")
    one_clear_line(*cli("games", "verify", "--rom-dir", str(empty)), r"no Jericho game files in .*empty")
    one_clear_line(*cli("games", "verify", "--rom-dir", str(tmp_path / "missing")), r"missing: no such folder")
    one_clear_line(*cli("bench", "memory", "--sizes", "abc"), r"--sizes 'abc': expected a comma list")
    one_clear_line(*cli("bench", "memory", "--sizes", "0"), r"--sizes '0': give integers >= 1")


def test_memory_load_from_that_is_not_a_memory(tripwires: None, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("not a run")
    one_clear_line(*cli("run", f"memory.load_from={other}", f"run.dir={tmp_path / 'r'}"),
                   r"memory\.load_from=.*other: neither a run directory nor a memory folder")  # fmt: skip


def test_regrade_of_a_text_run_says_there_is_nothing_to_regrade(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert cli("run", "policy=uniform", "run.episodes=1", "run.max_steps=1", "run.baselines=[]",
               "run.progress=false", f"run.dir={run_dir}")[0] == 0  # fmt: skip
    one_clear_line(*cli("regrade", str(run_dir)), r"keeps nothing to re-grade")


def test_reproduce_checks_its_setting_before_anything_loads(tripwires: None, tmp_path: Path) -> None:
    run_dir = f"run.dir={tmp_path / 'r'}"
    one_clear_line(*cli("reproduce", "paper_zork1", run_dir), r"unknown setting 'paper_zork1'")
    one_clear_line(*cli("reproduce", "paper_jericho", "--budget", "huge", run_dir), r"--budget 'huge': use smoke")
    one_clear_line(*cli("reproduce", "paper_jericho", "reproduce.compare=[]", run_dir),
                   r"reproduce\.compare=\[\]: give at least one")  # fmt: skip
    one_clear_line(*cli("reproduce", "paper_jericho", "reproduce.compare.0.metric=median", run_dir),
                   r"reproduce\.compare\[0\]\.metric=median: choose one of mean_score")  # fmt: skip
