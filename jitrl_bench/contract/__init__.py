"""The typed seams between the rooms, so mypy --strict checks every connection (one module per side: `prompts`,
`env` (and `needs`: what an env needs on the machine), `policy`, `agent`; import them from here):

    env ──StepView──▶ agent ──Prompt──▶ policy: Scorer | BiasedChooser (bias inside the engine) | Generator
                        │                  └──▶ Scored / Choice / Generated, each with its Usage
                        └──▶ Decision ──▶ runner ──▶ env.step(action)

No component asks another what it can do with getattr: a policy that applies a bias inside its engine hands out a
`BiasedChooser` from `chooser()`, and the agent's code says which path it took in every decision it records.
"""

from __future__ import annotations

from jitrl_bench.contract.agent import (
    Agent,
    AgentConfig,
    BuildContext,
    EpisodeContext,
    FinishedEpisode,
    Learner,
    Read,
    StepTrace,
)
from jitrl_bench.contract.env import (
    Candidate,
    EnvConfig,
    EpisodeEnv,
    JudgeChoice,
    Lease,
    Leases,
    PageText,
    PromptLayout,
    Regrader,
    SharedCopies,
    StepView,
    Turn,
)
from jitrl_bench.contract.needs import GameFile, GameFiles, Requirement
from jitrl_bench.contract.policy import (
    MAX_OPTIONS,
    BiasedChooser,
    Choice,
    Completer,
    Generated,
    Generator,
    Policy,
    PolicyConfig,
    Scored,
    Scorer,
    ServeSpec,
    no_nan,
)
from jitrl_bench.contract.prompts import (
    ACTING,
    EVALUATING,
    LEARNING,
    PROPOSING,
    SUMMARIZING,
    ContextWindow,
    Ledger,
    Message,
    Prompt,
    RenderedPrompt,
)
from jitrl_bench.records import PromptCut, Usage

__all__ = [
    "ACTING",
    "EVALUATING",
    "LEARNING",
    "MAX_OPTIONS",
    "PROPOSING",
    "SUMMARIZING",
    "Agent",
    "AgentConfig",
    "BiasedChooser",
    "BuildContext",
    "Candidate",
    "Choice",
    "Completer",
    "ContextWindow",
    "EnvConfig",
    "EpisodeContext",
    "EpisodeEnv",
    "FinishedEpisode",
    "GameFile",
    "GameFiles",
    "Generated",
    "Generator",
    "JudgeChoice",
    "Learner",
    "Lease",
    "Leases",
    "Ledger",
    "Message",
    "PageText",
    "Policy",
    "PolicyConfig",
    "Prompt",
    "PromptCut",
    "PromptLayout",
    "Read",
    "Regrader",
    "RenderedPrompt",
    "Requirement",
    "Scored",
    "Scorer",
    "ServeSpec",
    "SharedCopies",
    "StepTrace",
    "StepView",
    "Turn",
    "Usage",
    "no_nan",
]
