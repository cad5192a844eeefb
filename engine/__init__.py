"""gpt2-engine: GPT-2 inference in NumPy and Numba.

    from engine import GPT2
    model = GPT2.from_pretrained("gpt2")
    logits = model(model.tokenizer.encode("Hello, world!"))   # float32 [T, V]
"""

from .config import GPT2Config
from .errors import CheckpointError, ConfigError, GPT2Error, InputError, ModelNotFoundError, TokenizerError
from .model import GPT2
from .threads import get_threads, set_threads

__all__ = ["GPT2", "GPT2Config", "GPT2Error", "CheckpointError", "ConfigError", "InputError",
           "ModelNotFoundError", "TokenizerError", "get_threads", "set_threads"]
