"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class UsageError(ValueError):
    """Bad input from the user: an env id, a flag, a value. Its message says how to fix it."""
