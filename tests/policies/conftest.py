"""Fixtures of the policy tests: the transformers reference policy (float32) and the prompt every backend scores."""

from __future__ import annotations

import pytest

from jitrl_bench.contract import Prompt
from jitrl_bench.policies.hf import HFPolicy, HFPolicyConfig
from tests.conftest_vllm import OBSERVATION, SYSTEM


@pytest.fixture(scope="module")
def hf() -> HFPolicy:
    return HFPolicyConfig(model="smollm2", dtype="float32").make()


@pytest.fixture(scope="module")
def prompt() -> Prompt:
    return Prompt.chat(SYSTEM, OBSERVATION)
