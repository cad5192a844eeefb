"""GPT-2 hyper-parameters, read from a Hugging Face `config.json`.

Only what changes the arithmetic is kept. A config the engine cannot run faithfully (another
activation, cross-attention, a width that does not split into heads, ...) is refused here, before
any weight is read, with a message naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# Both names denote GELU with the tanh approximation that GPT-2 was trained with.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh")


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024  # context length: rows of the position embedding
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    scale_attn_weights: bool = True  # divide attention scores by sqrt(head_dim)
    scale_attn_by_inverse_layer_idx: bool = False  # and, if set, by layer index + 1
    tie_word_embeddings: bool = True  # output layer is wte (the published checkpoints)
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    def __post_init__(self) -> None:
        for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config.json: {field} must be a positive integer, got {value!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner < 1):
            raise ConfigError(f"config.json: n_inner must be a positive integer or null, got {self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config.json: n_embd={self.n_embd} is not divisible by n_head={self.n_head}, "
                "so the heads cannot split the embedding"
            )
        if self.activation_function not in TANH_GELU_NAMES:
            raise ConfigError(
                f"config.json: activation_function {self.activation_function!r} is not supported; "
                f"this engine implements GPT-2's tanh GELU ({' or '.join(TANH_GELU_NAMES)})"
            )
        if not (isinstance(self.layer_norm_epsilon, (int, float)) and self.layer_norm_epsilon > 0):
            raise ConfigError(
                f"config.json: layer_norm_epsilon must be a positive number, got {self.layer_norm_epsilon!r}"
            )

    # The names used throughout the code and the public API.
    @property
    def n_ctx(self) -> int:
        return self.n_positions

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> GPT2Config:
        """Build a config from the fields of a Hugging Face GPT-2 `config.json`."""
        model_type = raw.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected 'gpt2'")
        if raw.get("add_cross_attention", False):
            raise ConfigError(f"{source}: add_cross_attention=true (encoder-decoder GPT-2) is not supported")
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        # Old configs spell the context length n_ctx; n_positions (the wpe rows) wins when both exist.
        if "n_positions" not in known and "n_ctx" in raw:
            known["n_positions"] = raw["n_ctx"]
        for token_field in ("bos_token_id", "eos_token_id"):
            if known.get(token_field) is None:
                known.pop(token_field, None)
        try:
            return cls(**known)
        except TypeError as error:  # a field of the wrong JSON type reaching a comparison
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> GPT2Config:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json in the model directory") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read config.json ({error})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: config.json must hold a JSON object")
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict:
        """The Hugging Face `config.json` fields of this config (what `from_dict` reads back)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_ctx": self.n_positions, **fields}
