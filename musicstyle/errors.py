"""The one exception family a user sees: each message is a single line naming the problem."""


class MusicStyleError(Exception):
    """Base class: command-line entry points print it as one line and exit with status 2."""


class ConfigError(MusicStyleError):
    """A setting is missing, unknown, out of range or of the wrong type."""


class AudioError(MusicStyleError):
    """An audio file is missing, unreadable, empty, silent or too short for the request."""


class DivergenceError(MusicStyleError):
    """The loss became NaN or infinite during optimisation."""
