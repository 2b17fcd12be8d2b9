"""One exception type for bad user input: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input (config, game file, path, missing asset). The message says what is wrong and how to fix it."""


class InfraError(RuntimeError):
    """The benchmark's infrastructure failed (site down, HTTP 5xx, expired login, browser crash): not the agent's
    failure. The runner retries the episode, then records it as `error`, outside success rates."""
