"""The shared text-game plumbing: what reaches the agent and what reaches the interpreter."""

from __future__ import annotations

from jitrl_bench.envs.base import text_space
from jitrl_bench.envs.text.game import FALLBACK_COMMANDS, candidate_list, clean_command
from jitrl_bench.text import clean_text


def test_clean_text_fits_the_observation_space() -> None:
    text = clean_text("  Caf\u00e9 \u201cHi\u201d\r\nnext\x00 line  ", 1000)
    assert text == "Cafe Hi\nnext line" and text_space().contains(text)
    assert clean_text("x" * 50, 10) == "x" * 10


def test_commands_are_one_line_without_frotz_escapes() -> None:
    assert clean_command("  open\nthe  door\\q ") == "open the door q"


def test_candidates_sorted_unique_never_empty() -> None:
    assert candidate_list(["take lamp", "north", " north ", "", "take  lamp"]) == (["north", "take lamp"], 0)
    assert candidate_list([]) == (sorted(FALLBACK_COMMANDS), 0)


def test_past_the_cap_the_simulators_first_commands_are_kept_and_the_cut_counted() -> None:
    assert candidate_list(["wait", "look", "look", "eat", "open"], limit=2) == (["look", "wait"], 2)


def test_long_commands_are_cut_to_the_input_line() -> None:
    assert len(clean_command("x" * 500)) == 198 and len(clean_command("\u00e9" * 500).encode()) <= 198
