"""GPT-2 hyper-parameters, read from a Hugging Face `config.json`.

Only what changes the arithmetic is kept. A config the engine cannot run faithfully (another
activation, cross-attention, a width that does not split into heads, ...) is refused here, before
any weight is read, with a message naming the field, and so is a field of the wrong JSON type (a
boolean written as a string, a size written as a float, a non-finite epsilon). What Hugging Face's
schema allows is read: a list of end-of-text ids, `hidden_size` and the other aliases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks import FLOAT32_MAX, FLOAT32_TINY, is_finite_number, is_integer, shown
from .errors import ConfigError
from .files import read_json, regular_file

# Both names denote GELU with the tanh approximation that GPT-2 was trained with.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh")


# Where a published config.json may spell a field differently: Hugging Face's `attribute_map` for
# GPT-2 (and n_ctx, the old name of the context length). The engine's own name wins when both exist.
ALIASES = {
    "n_positions": ("n_ctx", "max_position_embeddings"),
    "n_embd": ("hidden_size",),
    "n_head": ("num_attention_heads",),
    "n_layer": ("num_hidden_layers",),
}
BOOLEAN_FIELDS = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "tie_word_embeddings")
SIZE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
CONFIG_JSON_LIMIT = 1 << 20  # bytes: a GPT-2 config.json has about 1,000


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    eos_token_id: int = 50256  # ends a sequence; also the token a prompt starts with when asked (bos=True)
    # config.json may list several end ids (Hugging Face's schema allows a list): the first is
    # eos_token_id, the others are here. Generation stops at any of them.
    extra_eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for field in SIZE_FIELDS:
            value = getattr(self, field)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"config.json: {field} must be a positive integer, got {shown(value)}")
        if self.n_inner is not None and (not _is_int(self.n_inner) or self.n_inner < 1):
            raise ConfigError(f"config.json: n_inner must be a positive integer or null, got {shown(self.n_inner)}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config.json: n_embd={self.n_embd} is not divisible by n_head={self.n_head}, "
                "so the heads cannot split the embedding"
            )
        if not isinstance(self.activation_function, str) or self.activation_function not in TANH_GELU_NAMES:
            raise ConfigError(
                f"config.json: activation_function {shown(self.activation_function)} is not supported; "
                f"this engine implements GPT-2's tanh GELU ({' or '.join(TANH_GELU_NAMES)})"
            )
        epsilon = self.layer_norm_epsilon
        if not (is_finite_number(epsilon) and FLOAT32_TINY <= float(epsilon) <= FLOAT32_MAX):
            raise ConfigError(
                "config.json: layer_norm_epsilon must be a positive number that float32 can hold "
                f"({FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}), got {shown(epsilon)}"
            )
        object.__setattr__(self, "layer_norm_epsilon", float(epsilon))
        for field in BOOLEAN_FIELDS:
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise ConfigError(f"config.json: {field} must be true or false (a JSON boolean), got {shown(value)}")
        for name, value in self._token_ids():
            if not is_integer(value) or value < 0:
                raise ConfigError(f"config.json: {name} must be a token id (an integer >= 0), got {shown(value)}")

    def _token_ids(self):
        yield from (("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id))
        yield from (("eos_token_id", i) for i in self.extra_eos_token_ids)

    def check_token_ids_fit(self, source: str = "config.json") -> None:
        """The start and end ids must be rows of the embedding. (Checked for config.json files, not
        for configs built in code, whose defaults are GPT-2's 50256 whatever their vocab_size.)"""
        for name, value in self._token_ids():
            if value >= self.vocab_size:
                raise ConfigError(
                    f"{source}: {name} must be a token id from 0 to vocab_size - 1 = {self.vocab_size - 1}, "
                    f"got {shown(value)}"
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

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every token id that ends a sequence: eos_token_id first."""
        return (self.eos_token_id, *self.extra_eos_token_ids)

    @property
    def parameter_count(self) -> int:
        """The parameters this config describes (as `parameter_shapes` lists them), worked out with
        Python integers, so a config of absurd sizes can be refused before anything is built."""
        C, I, V, P = self.n_embd, self.mlp_width, self.vocab_size, self.n_positions
        per_layer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (C * I + I) + (I * C + C)
        return V * C + P * C + self.n_layer * per_layer + 2 * C + (0 if self.tie_word_embeddings else V * C)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> GPT2Config:
        """Build a config from the fields of a Hugging Face GPT-2 `config.json`: every field the
        engine uses is checked for its JSON type and range, naming the file and the field."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: must hold a JSON object, got {type(raw).__name__}")
        model_type = raw.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ConfigError(f"{source}: model_type is {shown(model_type)}, expected 'gpt2'")
        cross = raw.get("add_cross_attention", False)
        if not isinstance(cross, bool):
            raise ConfigError(
                f"{source}: add_cross_attention must be true or false (a JSON boolean), got {shown(cross)}"
            )
        if cross:
            raise ConfigError(f"{source}: add_cross_attention=true (encoder-decoder GPT-2) is not supported")
        own = set(cls.__dataclass_fields__) - {"extra_eos_token_ids"}
        known = {name: raw[name] for name in own if name in raw}
        for name, aliases in ALIASES.items():
            for alias in aliases:
                if name not in known and alias in raw:
                    known[name] = raw[alias]
        for token_field in ("bos_token_id", "eos_token_id"):
            if known.get(token_field) is None:
                known.pop(token_field, None)
        eos = known.get("eos_token_id")
        if isinstance(eos, list):  # Hugging Face allows several end ids; an empty list is no list
            if not eos:
                del known["eos_token_id"]
            else:
                known["eos_token_id"], known["extra_eos_token_ids"] = eos[0], tuple(eos[1:])
        try:
            config = cls(**known)
        except ConfigError as error:
            raise ConfigError(str(error).replace("config.json", source, 1)) from None
        config.check_token_ids_fit(source)
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> GPT2Config:
        path = Path(path)
        if not regular_file(path, ConfigError):
            raise ConfigError(f"{path}: no config.json in the model directory")
        raw = read_json(path, ConfigError, CONFIG_JSON_LIMIT)
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict:
        """The Hugging Face `config.json` fields of this config (what `from_dict` reads back)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "extra_eos_token_ids"}
        if self.extra_eos_token_ids:
            fields["eos_token_id"] = list(self.eos_token_ids)
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_ctx": self.n_positions, **fields}
