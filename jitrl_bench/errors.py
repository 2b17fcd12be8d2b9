"""One exception type for bad user input: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input (config, game file, path, missing asset). The message says what is wrong and how to fix it."""
