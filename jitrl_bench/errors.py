"""One exception type for bad user input: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input (config, game file, path, missing asset). The message says what is wrong and how to fix it."""


class InfraError(RuntimeError):
    """The benchmark's infrastructure failed (site down, HTTP 5xx, expired login, browser crash): not the agent's
    failure. The runner retries the episode, then records it as `error`, outside success rates."""


class Ungradable(Exception):
    """The episode ran, but its grade cannot be computed now (e.g. the LLM judge it needs is not configured). The
    episode is kept as `ungraded` (outside success rates, counted) and `jitrl-bench regrade` can grade it later."""
