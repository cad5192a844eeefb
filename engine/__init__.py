"""gpt2-engine: GPT-2 inference in NumPy and Numba.

    from engine import GPT2
    model = GPT2.from_pretrained("gpt2")
    logits = model(model.tokenizer.encode("Hello, world!"))   # float32 [T, V]

The layers, bottom to top (docs/architecture.md): kernels/ (Numba, beside their NumPy references),
engine.base (errors, checks, config, numerics, files, threads), engine.state (weights, loading,
tokenizer, KV cache), engine.model (the forward pass) and engine.capture, the tasks
(engine.generation, engine.scoring), engine.analysis, the facade engine.gpt2, and the interfaces
(engine.cli). Imports point down only (tests/test_layers.py).
"""

from .analysis.explain import Explanation, Explanations
from .base.config import GPT2Config
from .base.errors import (
    CheckpointError,
    ConfigError,
    GPT2Error,
    InputError,
    ModelNotFoundError,
    OutputError,
    TokenizerError,
)
from .base.threads import get_threads, set_threads
from .capture import ActivationCache, set_heads, set_neurons, zero_heads, zero_neurons
from .generation import GenerationResult
from .gpt2 import GPT2
from .scoring import Scores

__all__ = [
    "GPT2",
    "ActivationCache",
    "CheckpointError",
    "ConfigError",
    "Explanation",
    "Explanations",
    "GPT2Config",
    "GPT2Error",
    "GenerationResult",
    "InputError",
    "ModelNotFoundError",
    "OutputError",
    "Scores",
    "TokenizerError",
    "get_threads",
    "set_heads",
    "set_neurons",
    "set_threads",
    "zero_heads",
    "zero_neurons",
]
