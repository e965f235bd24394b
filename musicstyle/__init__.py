"""musicstyle: random-network audio style transfer (Ulyanov & Lebedev 2016), and a harness to sweep it."""

from .util.machine import compile_cache_per_capability

compile_cache_per_capability()  # before any torch.compile: a capped CPU capability gets its own kernel cache

from .config import TransferConfig, make_config  # noqa: E402
from .errors import AudioError, ConfigError, DivergenceError, MusicStyleError  # noqa: E402

__all__ = ["TransferConfig", "make_config", "MusicStyleError", "ConfigError", "AudioError", "DivergenceError"]
