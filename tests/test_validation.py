"""Bad input, tried as a new user would: one line naming the key (or the file) and what is allowed, exit 2, and
nothing expensive loaded first. The loaders of models, embedders, games and browsers are replaced by tripwires, so a
bad value that slipped past validation fails the test instead of loading something."""

from __future__ import annotations

import importlib
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
    from jitrl_bench.envs.text import game as text_game
    from jitrl_bench.envs.web import browser
    from jitrl_bench.memory import embed
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
    monkeypatch.setattr(embed.MiniLMEmbedder, "__init__", trip("embedder"))
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
    ("run.compare_to=a/b", r"run\.compare_to=a/b: use letters"),
    ("run.executor=spark", r"run\.executor=spark: choose one of local, ray"),
    ("run.shard=2/2", r"run\.shard=2/2: i/n needs 0 <= i < n \(got i=2, n=2\)"),
    ("run.shard=half", r"run\.shard=half: i/n, e\.g\. 0/4 for the first of four shards"),
    ("run.ray.address=headnode", r"run\.ray\.address=headnode: auto, HOST:PORT"),
    ("run.ray.workers=0", r"run\.ray\.workers=0: must be >= 1"),
    ("run.ray.retries=-1", r"run\.ray\.retries=-1: must be >= 0"),
    ("run.ray.shared_memory=shared", r"run\.ray\.shared_memory=shared: choose one of stream, service"),
    ("run.shard=0/2 run.executor=ray run.ray.shared_memory=service", r"run\.shard=0/2: shards cannot share a memory"),
    ("run.repeats=0", r"run\.repeats=0: must be >= 1"),
    ("run.protocol=offline", r"run\.protocol=offline: choose one of online, train_test, stream"),
    ("run.test_episodes=0", r"run\.test_episodes=0: must be >= 1"),
    ("run.tasks=[]", r"run\.tasks=\[\]: give at least one"),
    ("run.protocol=stream run.shard=0/2", r"run\.protocol=stream: online with run\.shard"),
    ("run.repeats=3 run.shard=0/2", r"run\.repeats=3: 1 with run\.shard"),
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
    ("env=nosuchenv", r"unknown env 'nosuchenv': choose one of alfworld, babyai, jericho, "),
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
    # the same key, checked by another class (full key paths: a row per class that checks it)
    ("agent=jitrl_paper agent.beta=0", r"agent\.beta=0(\.0)?: must be > 0"),
    ("agent=jitrl_paper agent.k=0", r"agent\.k=0: must be >= 1"),
    ("agent=jitrl_paper agent.gamma=2", r"agent\.gamma=2(\.0)?: must be in \[0, 1\]"),
    ("agent=jitrl_paper agent.threshold=-2", r"agent\.threshold=-2(\.0)?: must be in \[-1, 1\]"),
    ("agent=jitrl_paper agent.name=a/b", r"agent\.name=a/b: use letters"),
    ("agent=jitrl_paper agent.paper.alpha=-1", r"agent\.paper\.alpha=-1(\.0)?: must be >= 0"),
    ("agent=jitrl_paper agent.paper.w_start=-1", r"agent\.paper\.w_start=-1(\.0)?: must be >= 0"),
    ("agent=jitrl_paper agent.paper.w_end=-1", r"agent\.paper\.w_end=-1(\.0)?: must be >= 0"),
    ("agent=jitrl_paper agent.lexical.recall=0", r"agent\.lexical\.recall=0: must be >= 1"),
    ("agent=jitrl_paper agent.lexical.unigram_weight=-1", r"agent\.lexical\.unigram_weight=-1(\.0)?: must be >= 0"),
    ("agent=jitrl_paper agent.lexical.ngram_weight=-1", r"agent\.lexical\.ngram_weight=-1(\.0)?: must be >= 0"),
    ("agent=jitrl_paper agent.lexical.threshold_start=2", r"agent\.lexical\.threshold_start=2(\.0)?: must be in"),
    ("agent=jitrl_paper agent.lexical.threshold_end=2", r"agent\.lexical\.threshold_end=2(\.0)?: must be in"),
    ("agent=jitrl_paper agent.lexical.decay_steps=-1", r"agent\.lexical\.decay_steps=-1: must be >= "),
    ("agent=prompt_update agent.k=0", r"agent\.k=0: must be >= 1"),
    ("agent=prompt_update agent.gamma=2", r"agent\.gamma=2(\.0)?: must be in \[0, 1\]"),
    ("agent=prompt_update agent.threshold=2", r"agent\.threshold=2(\.0)?: must be in \[-1, 1\]"),
    ("agent=reflexion agent.name=a/b", r"agent\.name=a/b: use letters"),
    ("agent=reflexion agent.max_new_tokens=0", r"agent\.max_new_tokens=0: must be >= "),
    ("agent=webrl agent.name=a/b", r"agent\.name=a/b: use letters"),
    ("agent=webrl agent.max_new_tokens=0", r"agent\.max_new_tokens=0: must be >= "),
    ("agent=static agent.name=a/b", r"agent\.name=a/b: use letters"),
    ("agent.propose.max_new_tokens=0", r"agent\.propose\.max_new_tokens=0: must be >= "),
    ("agent.summary.max_new_tokens=0", r"agent\.summary\.max_new_tokens=0: must be >= "),
    ("env.name=a/b", r"env\.name=a/b: use letters"),
    ("env.goal=vague", r"env\.goal=vague: choose one of detailed, brief, none"),
    ("env.nb_objects=-1", r"env\.nb_objects=-1: must be >= "),
    ("env.quest_length=0", r"env\.quest_length=0: must be >= 1"),
    ("env=jericho env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=jericho env.game=[]", r"env\.game=\[\]: give at least one"),
    ("env=miniwob env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=scienceworld env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=scienceworld env.tasks=[]", r"env\.tasks=\[\]: give at least one"),
    ("env=scienceworld env.tasks=[boill]", r"env\.tasks=boill: each must be one of boil, "),
    ("env=scienceworld env.split=valid", r"env\.split=valid: choose one of train, dev, test"),
    ("env=scienceworld env.instance=-1", r"env\.instance=-1: null \(each episode's seed picks its instance\)"),
    ("env=scienceworld env.simplifications=[fast]", r"env\.simplifications=fast: each must be one of easy, "),
    ("env=scienceworld env.simplifications=[easy,openDoors]", r"env\.simplifications=\[.easy., .openDoors.\]: "),
    ("env=scienceworld env.max_candidates=0", r"env\.max_candidates=0: must be >= 1"),
    ("env=scienceworld run.protocol=train_test env.split=test", r"env\.split=test is scienceworld's test split"),
    ("env=babyai env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=babyai env.level=[]", r"env\.level=\[\]: give at least one"),
    ("env=babyai env.level=[GoToRedBal]", r"env\.level=GoToRedBal: each must be one of ActionObjDoor, "),
    ("env=textworld_express env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=textworld_express env.game=[]", r"env\.game=\[\]: give at least one"),
    ("env=textworld_express env.game=coins", r"env\.game=coins: choose one of coin, cookingworld, "),
    ("env=textworld_express env.params=numLocations", r"env\.params=numLocations: name=number pairs"),
    ("env=textworld_express env.split=valid", r"env\.split=valid: choose one of train, dev, test"),
    ("env=textworld_express env.instance=-2", r"env\.instance=-2: null"),
    ("env=alfworld env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=alfworld env.task_types=[]", r"env\.task_types=\[\]: give at least one"),
    ("env=alfworld env.task_types=pick", r"env\.task_types=pick: choose one of pick_and_place_simple, "),
    ("env=alfworld env.split=test", r"env\.split=test: choose one of train, valid_seen, valid_unseen"),
    ("env=alfworld env.games=all", r"env\.games=all: choose one of official, sample"),
    ("env=alfworld env.instance=-1", r"env\.instance=-1: null"),
    ("env=alfworld env.sample_per_type=0", r"env\.sample_per_type=0: at least 1"),
    ("env=webarena_verified env.name=a/b", r"env\.name=a/b: use letters"),
    ("env=webarena_verified env.sites=[moon]", r"env\.sites=moon: each must be one of "),
    ("env=webarena_verified +env.urls.moon=http://x", r"env\.urls=moon: each must be one of "),
    ("env=webarena_verified env.tasks=[999999]", r"env\.tasks=.*999999"),
    ("env=webarena_verified env.oracle_stop=true", r"env\.oracle_stop=True: .* grades offline from the HAR"),
    ("env=webarena_lite env.judge.base_url=ftp://x", r"env\.judge\.base_url=ftp://x: must be an http"),
    ("env=webarena_lite env.judge.max_retries=-1", r"env\.judge\.max_retries=-1: must be >= 0"),
    ("env=webarena_lite env.judge.api_key_env=sk-abc123", r"env\.judge\.api_key_env=\*\*\*: give the NAME"),
    ("memory.partition_by=[task,'']", r"memory\.partition_by=.*: names of state fields"),
    ("memory.index.exact_below=0", r"memory\.index\.exact_below=0: must be >= 1"),
    ("memory.index.hnsw_ef_construction=0", r"memory\.index\.hnsw_ef_construction=0: must be >= "),
    ("memory.index.hnsw_ef_search=0", r"memory\.index\.hnsw_ef_search=0: must be >= "),
    ("memory.index.ivf_nprobe=0", r"memory\.index\.ivf_nprobe=0: must be >= 1"),
    ("policy.threads=0", r"policy\.threads=0: must be >= 1"),
    ("policy=uniform policy.name=a/b", r"policy\.name=a/b: use letters"),
    ("policy=vllm policy.dtype=float8", r"policy\.dtype=float8: choose one of "),
    ("policy=vllm policy.logprobs_mode=both", r"policy\.logprobs_mode=both: choose one of "),
    ("policy=vllm policy.max_prompt_tokens=0", r"policy\.max_prompt_tokens=0: must be >= 16"),
    ("policy=vllm policy.kv_cache_gb=-1", r"policy\.kv_cache_gb=-1(\.0)?: must be >= "),
    ("policy=vllm policy.seed=-1", r"policy\.seed=-1: must be >= 0"),
    ("policy=vllm policy.model=/no/such/model", r"policy\.model=/no/such/model: policy model folder not found"),
    (
        "policy=openai policy.tokenizer=null policy.model=/no/such/model",
        r"policy\.model=/no/such/model: policy model folder not found",
    ),
    ("policy=openai policy.tokenizer=/no/such/model", r"policy\.tokenizer=/no/such/model: .*not found"),
    ("policy=openai policy.max_prompt_tokens=0", r"policy\.max_prompt_tokens=0: must be >= 16"),
    ("policy=openai policy.max_retries=-1", r"policy\.max_retries=-1: must be >= 0"),
    ("policy=openai policy.backoff_s=-1", r"policy\.backoff_s=-1(\.0)?: must be >= 0"),
    ("policy=openai policy.verbalized_max_tokens=0", r"policy\.verbalized_max_tokens=0: must be >= "),
    ("reward.failure_reward=inf", r"reward\.failure_reward=inf: must be a finite number"),
    ("reward=llm reward.failure_last=nan", r"reward\.failure_last=nan: must be a finite number"),
    ("run.ray.cpus_per_worker=-1", r"run\.ray\.cpus_per_worker=-1(\.0)?: must be >= "),
    ("run.ray.gpus_per_worker=-1", r"run\.ray\.gpus_per_worker=-1(\.0)?: must be >= 0"),
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
    """A new knob with a range or closed set needs a row in KNOBS. A knob is a full key path with the class whose
    check names it (`agent.k` of JitRLConfig and `agent.k` of JitRLPaperConfig are two knobs; `agent.propose.k` is
    one, whichever agent holds it): every shipped group option is composed, its config tree walked, and each key its
    check methods name is counted against the knobs the rows reach (a row reaches the knobs of its own group options).
    Mutant: a row dropped from KNOBS (e.g. `agent=jitrl_paper agent.k=0`, or `env=textworld env.name=...`, whose
    leaf names other rows share) fails this test with that knob named; an exemption whose knob is tested also fails."""
    tables = knob_tables()
    checked = {knob: option for option, table in tables.items() for knob in table}
    tested = {knob for override, _ in KNOBS for knob in reached(override, tables)} | TESTED_BELOW
    untested = sorted(f"{knob}  (e.g. {checked[knob]})" for knob in set(checked) - tested - set(UNTESTED_ON_PURPOSE))
    assert untested == [], "knobs checked in code but not tried here:\n" + "\n".join(untested)
    assert sorted(set(UNTESTED_ON_PURPOSE) - set(checked)) == [], "exempt, but no such knob"
    assert sorted(set(UNTESTED_ON_PURPOSE) & tested) == [], "exempt, but tested: drop the exemption"


HELPERS = {"one_of", "each_one_of", "at_least", "above", "between", "finite", "name", "env_var_name", "http_url",
           "non_empty", "check_model", "BadValue"}  # fmt: skip
GROUP_OPTIONS = ("env", "policy", "agent", "reward", "memory", "prices")
TESTED_BELOW = {"reproduce.compare (ReproduceConfig)", "reproduce.compare[].metric (Compare)"}
"""The reproduce section: test_reproduce_checks_its_setting_before_anything_loads."""
UNTESTED_ON_PURPOSE: dict[str, str] = {}
"""knob -> why no row tries it."""


def knob_tables() -> dict[str, set[str]]:
    """For each group option ("agent=jitrl_paper"; "run" for the run section, "reproduce=X" for an overlay's
    reproduce section): the knobs of its config tree, as "full.path (Class)" with list items as [] and dict entries
    and computed keys as *."""
    from omegaconf import OmegaConf

    from jitrl_bench import config
    from jitrl_bench.paths import CONFIG_DIR
    from jitrl_bench.reproduce import ReproduceConfig
    from jitrl_bench.run.settings import RunConfig

    run = OmegaConf.load(CONFIG_DIR / "config.yaml").run
    tables = {"run": walk("run", config.typed("run", run, RunConfig))}
    for group in GROUP_OPTIONS:  # a group file is its node (no defaults list, no interpolation): read, not composed
        for option in config.choices(group):
            node = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
            node = node if "_target_" in node else node[group]  # `# @package _global_`: the group is one key
            for missing in OmegaConf.missing_keys(node):  # a `???` the user must give (policy=hf's model)
                OmegaConf.update(node, missing, "given")
            module, _, name = str(node._target_).rpartition(".")
            cls = vars(importlib.import_module(module))[name]
            fields = OmegaConf.create({k: v for k, v in node.items() if k != "_target_"})
            tables[f"{group}={option}"] = walk(group, config.typed(group, fields, cls))
    for option in config.choices("experiment"):
        overlay = OmegaConf.load(CONFIG_DIR / "experiment" / f"{option}.yaml")
        if "reproduce" in overlay:
            reproduce = config.typed("reproduce", overlay.reproduce, ReproduceConfig)
            tables[f"experiment={option}"] = walk("reproduce", reproduce)
    return tables


def walk(path: str, value: object) -> set[str]:
    """The knobs of `value` (at `path`) and of every dataclass nested in it, as check_tree and dict loops reach them."""
    import dataclasses

    found: set[str] = set()
    if isinstance(value, list):
        return found.union(*(walk(f"{path}[]", item) for item in value))
    if isinstance(value, dict):
        return found.union(*(walk(f"{path}.*", item) for item in value.values()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            found |= walk(f"{path}.{f.name}", vars(value)[f.name])
        found |= {f"{path}.{key} ({owner})" for owner, key in checked_keys(type(value))}
    return found


def checked_keys(cls: type) -> set[tuple[str, str]]:
    """(class, key) for each key the check methods of `cls` and its bases name: the first argument of a helper
    (a constant, or its constant head then *), or a `self.<field>` handed to any call (check_beta(self.beta))."""
    import ast
    import inspect
    import textwrap

    keys: set[tuple[str, str]] = set()
    for owner in cls.__mro__:
        if owner is object or owner.__module__ == "jitrl_bench.checks":
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(owner)))
        methods = [n for n in tree.body[0].body if isinstance(n, ast.FunctionDef) and n.name.startswith("check")]  # type: ignore[attr-defined]
        for call in (c for m in methods for c in ast.walk(m) if isinstance(c, ast.Call) and c.args):
            first, func = call.args[0], call.func
            helper = isinstance(func, ast.Name) and func.id in HELPERS
            if helper and isinstance(first, ast.Constant):
                keys.add((owner.__name__, str(first.value)))
            elif helper and isinstance(first, ast.JoinedStr):
                head = first.values[0]
                keys.add((owner.__name__, (str(head.value) if isinstance(head, ast.Constant) else "") + "*"))
            elif helper and isinstance(first, ast.Name):
                keys.add((owner.__name__, "*"))
            elif isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "self":
                keys.add((owner.__name__, first.attr))
    return keys


def reached(override: str, tables: dict[str, set[str]]) -> set[str]:
    """The knobs a KNOBS row tries: its last key, among the knobs of the group options the row chooses (defaults
    otherwise); `baselines.<name>.x` is `agent.x` of agent=<name> (the same file, the same check)."""
    import fnmatch

    from omegaconf import OmegaConf

    from jitrl_bench.paths import CONFIG_DIR

    listed = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "config.yaml").defaults)
    defaults = {k: v for d in listed if isinstance(d, dict) for k, v in d.items()}  # type: ignore[union-attr]
    tokens = override.split()
    chosen = {**defaults, **dict(t.split("=", 1) for t in tokens if t.split("=")[0] in GROUP_OPTIONS)}
    key = re.sub(r"\.(\d+)(?=\.|$)", "[]", tokens[-1].split("=")[0].lstrip("+~"))
    group = key.split(".")[0]
    if group == "baselines":
        _, agent, rest = key.split(".", 2)
        group, chosen["agent"], key = "agent", agent, f"agent.{rest}"
    table = tables.get("run" if group == "run" else f"{group}={chosen.get(group)}", set())
    patterns = {knob: knob.split(" ")[0] for knob in table}  # a key inside a checked dict reaches it (env.urls.x)
    return {knob for knob, p in patterns.items() if fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(key, p + ".*")}


# ---- beyond configs: folders and files that are not what they claim -------------------------------------------


def test_run_dir_that_is_a_file_or_unwritable(tripwires: None, tmp_path: Path) -> None:
    """A run.dir that cannot be made a writable folder gets one line, as any user, root included (root writes past
    permission bits, so the failures here are ones the filesystem refuses to everyone): a file where the folder
    should be, a file where a parent should be (ENOTDIR), a name longer than the filesystem allows (ENAMETOOLONG).
    Mutants: `make_writable_dir` without its `except OSError` fails the last two with a traceback; its `exists()`
    look outside the `try` fails the last (a traceback from stat, as it did before it moved)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_clear_line(*cli("run", f"run.dir={afile}"), r"run\.dir=.*afile is a file, not a folder")
    one_clear_line(*cli("run", f"run.dir={afile / 'r'}"), r"run\.dir=.*afile/r cannot be written \(Not a directory\)")
    too_long = tmp_path / ("r" * 300)
    one_clear_line(*cli("run", f"run.dir={too_long}"), r"run\.dir=.*rrr cannot be written \(File name too long\)")
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


def test_run_dir_holding_something_else(tripwires: None, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my thesis")
    one_clear_line(*cli("run", f"run.dir={tmp_path}"), r"is not empty and holds no jitrl-bench run")
    assert (tmp_path / "notes.txt").read_text() == "my thesis"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("_meta: [unclosed")
    one_clear_line(*cli("run", f"run.dir={broken}"), r"config\.yaml is not a jitrl-bench run config")


@pytest.mark.slow
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
    one_clear_line(*cli("games", "verify", "--rom-dir", str(empty)), r"no jericho game files in .*empty")
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


@pytest.mark.slow
def test_reproduce_checks_its_setting_before_anything_loads(tripwires: None, tmp_path: Path) -> None:
    run_dir = f"run.dir={tmp_path / 'r'}"
    one_clear_line(*cli("reproduce", "paper_zork1", run_dir), r"unknown setting 'paper_zork1'")
    one_clear_line(*cli("reproduce", "paper_jericho", "--budget", "huge", run_dir), r"--budget 'huge': use smoke")
    one_clear_line(*cli("reproduce", "paper_jericho", "reproduce.compare=[]", run_dir),
                   r"reproduce\.compare=\[\]: give at least one")  # fmt: skip
    one_clear_line(*cli("reproduce", "paper_jericho", "reproduce.compare.0.metric=median", run_dir),
                   r"reproduce\.compare\[0\]\.metric=median: choose one of mean_score")  # fmt: skip
