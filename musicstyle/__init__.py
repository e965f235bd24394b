"""musicstyle: random-network audio style transfer (Ulyanov & Lebedev 2016), and a harness to sweep it."""

from .config import TransferConfig, make_config
from .errors import AudioError, ConfigError, DivergenceError, MusicStyleError

__all__ = ["TransferConfig", "make_config", "MusicStyleError", "ConfigError", "AudioError", "DivergenceError"]
