"""The text games' prompt: a short game reply, the room and the inventory, the admissible commands.

Game replies are short; the clip below only keeps a long opening text (a Jericho banner, a TextWorld intro) from
crowding out the rest. If a rendered prompt still exceeds the policy's window, the observation is cut by tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jitrl_bench.contract import ContextWindow, Prompt, PromptCut, RenderedPrompt, StepView, Turn
from jitrl_bench.text import clip

SYSTEM = (
    "You are playing a text adventure game. Read the observation and choose the single best next command "
    "from the admissible commands. Reply with the command only."
)
FIELD_CLIP = 400
OBSERVATION_CLIP = 600


@dataclass(frozen=True)
class TextGamePrompt:
    system: str = SYSTEM
    max_history: int = 3
    """Earlier commands shown (the observation of each is not: the state fields carry what matters)."""

    def render(self, view: StepView, history: Sequence[Turn], window: ContextWindow) -> RenderedPrompt:
        observation = clip(view.observation, OBSERVATION_CLIP)
        prompt = self._prompt(view, history, observation)
        total = window.prompt_tokens(prompt)
        if total <= window.max_prompt_tokens:
            return RenderedPrompt(prompt)
        # Too long for the window: keep the start of the observation that fits (never the end of the prompt).
        (before,) = window.count([observation])
        room = max(before - (total - window.max_prompt_tokens) - 8, 0)
        words = observation.split()
        while words and window.count([" ".join(words)])[0] > room:
            words = words[: max(len(words) * 3 // 4, len(words) - 50)] if len(words) > 4 else words[:-1]
        kept = " ".join(words) + " ..."
        cut = PromptCut("observation", before, window.count([kept])[0])
        return RenderedPrompt(self._prompt(view, history, kept), (cut,))

    def _prompt(self, view: StepView, history: Sequence[Turn], observation: str) -> Prompt:
        parts = [f"Goal: {view.goal}"] if view.goal else []
        if view.state.get("summary"):  # the agent's LLM-written notes of the episode so far (the paper's setting)
            parts.append(f"Episode so far: {clip(view.state['summary'], 2 * FIELD_CLIP)}")
        if history:
            parts.append("Recent commands: " + "; ".join(turn.action for turn in history[-self.max_history :]))
        for name in ("location", "inventory"):
            if view.state.get(name):
                parts.append(f"{name.capitalize()}: {clip(view.state[name], FIELD_CLIP)}")
        parts.append(f"Observation: {observation}")
        parts.append("Admissible commands: " + ", ".join(view.actions))
        parts.append("Next command:")
        return Prompt.chat(self.system, "\n".join(parts))


TEXT_GAME = TextGamePrompt()
