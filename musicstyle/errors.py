"""The one exception family a user sees: each message is a single line naming the problem."""


def one_line(text: str) -> str:
    """`text` with newlines and other unprintable characters escaped (a user's key or path may hold them)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class MusicStyleError(Exception):
    """Base class: command-line entry points print it as one line and exit with status 2."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class ConfigError(MusicStyleError):
    """A setting is missing, unknown, out of range or of the wrong type."""


class AudioError(MusicStyleError):
    """An audio file is missing, unreadable, empty, silent or too short for the request."""


class OutputError(MusicStyleError):
    """An output cannot be written (disk full, read-only or forbidden folder); nothing half-written is left."""


class DivergenceError(MusicStyleError):
    """The loss became NaN or infinite during optimisation."""
