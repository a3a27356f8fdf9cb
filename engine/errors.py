"""Errors the engine raises on purpose; anything else is a bug."""


class InputError(ValueError):
    """Bad input. The message is one sentence naming the file and the problem."""


class Cancelled(Exception):
    """The user cancelled; nothing was written."""
