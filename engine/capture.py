"""Capture and intervene: the intermediates of a forward pass, by their TransformerLens names.

`engine/model.py` calls `hooks(name, array)` at every named intermediate when it is given a hooks
function (and computes nothing extra when it is not). This module builds such functions:

    logits, cache = model.run_with_cache(ids)                     # every intermediate
    cache["blocks.0.attn.hook_pattern"]                           # [H, query, key] for ids [T]
    cache["pattern", 0]                                           # the same, TransformerLens' short form
    logits, cache = model.run_with_cache(ids, names=["blocks.1.mlp.hook_post"])   # only what is named

    logits = model.run_with_hooks(ids, fwd_hooks=[zero_neurons(1, [5, 17]), zero_heads(0, [2])])
    logits, cache = model.run_with_cache(ids, fwd_hooks=[set_heads(0, [2], other_cache["z", 0][:, [2]])])

Captured arrays keep the batch dims of the input: ids [T] give hook_resid_post [T, C] and
hook_pattern [H, T, S]; ids [B, T] give [B, T, C] and [B, H, T, S]. They are float32 copies, taken
after any intervention on the same name, so they show what the model went on to use.

An intervention is a pair (hook name, function). The function receives the array WITH its batch
axis ([B, T, I] for `mlp.hook_post`, [B, T, H, D] for `attn.hook_z`), and returns the array to use
instead, or None when it changed the array in place. It must keep the shape; the result is float32.

Legend: B batch rows, T tokens in the call, S key slots (T, or cached + T), C = n_embd, H = n_head,
D = head size, I = MLP width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .base.checks import check_token_ids, is_integer, shown
from .base.config import GPT2Config
from .base.errors import InputError

Intervention = tuple[str, Callable[[np.ndarray], np.ndarray | None]]

# Per block, in the order model.py reaches them.
BLOCK_HOOKS = (
    "hook_resid_pre",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)

# TransformerLens' short names (its `utils.get_act_name`): short -> the name after "blocks.{i}.".
SHORT_NAMES = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "pre": "mlp.hook_pre",
    "post": "mlp.hook_post",
    "ln1": "ln1.hook_normalized",
    "ln2": "ln2.hook_normalized",
}
GLOBAL_SHORT_NAMES = {"embed": "hook_embed", "pos_embed": "hook_pos_embed", "ln_final": "ln_final.hook_normalized"}


def hook_names(config: GPT2Config) -> list[str]:
    """Every hook name of a model of this config, in the order the forward pass reaches them."""
    names = ["hook_embed", "hook_pos_embed"]
    for i in range(config.n_layer):
        names += [f"blocks.{i}.{suffix}" for suffix in BLOCK_HOOKS]
    return names + ["ln_final.hook_normalized"]


def act_name(key, layer: int | None = None) -> str:
    """A hook name from a key as users write it: a full name ("blocks.3.attn.hook_pattern"), a
    TransformerLens short name ("embed"), or a short name with its layer, as a tuple ("pattern", 3)
    or as two arguments act_name("pattern", 3). Anything else is an InputError."""
    given = key if layer is None else (key, layer)
    if isinstance(key, tuple) and layer is None:
        key, layer = key if len(key) == 2 else (None, None)
    layer_ok = layer is None or is_integer(layer)
    if not isinstance(key, str) or not layer_ok:
        raise InputError(f"an activation key must be a hook name or (short name, layer), got {shown(given)}")
    if key in GLOBAL_SHORT_NAMES and layer is None:
        return GLOBAL_SHORT_NAMES[key]
    if key in SHORT_NAMES and layer is not None:
        return f"blocks.{layer}.{SHORT_NAMES[key]}"
    if layer is None and key.startswith(("hook_", "blocks.", "ln_final.")):
        return key
    known = ", ".join(list(GLOBAL_SHORT_NAMES) + [f"({s!r}, layer)" for s in SHORT_NAMES])
    raise InputError(
        f"unknown activation name {shown(key)}{'' if layer is None else f' with layer {layer}'}; "
        f"give a full hook name or one of {known}"
    )


class ActivationCache(Mapping):
    """Captured intermediates: a read-only mapping from hook name to a float32 array.

    Keys are full names ("blocks.0.hook_resid_post") or TransformerLens short forms
    (("resid_post", 0), "embed"). `stack("resid_post")` stacks one kind over the layers captured.
    """

    def __init__(self, activations: dict[str, np.ndarray], n_layer: int):
        self._activations = activations
        self.n_layer = n_layer

    def __getitem__(self, key) -> np.ndarray:
        name = act_name(key)
        try:
            return self._activations[name]
        except KeyError:
            raise KeyError(f"{name!r} was not captured (captured: {len(self._activations)} names)") from None

    def __contains__(self, key) -> bool:
        """Whether `key` was captured; False for keys that name no activation at all."""
        try:
            return act_name(key) in self._activations
        except InputError:
            return False

    def __iter__(self):
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    def stack(self, short: str) -> np.ndarray:
        """One kind of activation for every layer: [L, ...] (e.g. "resid_post" -> [L, T, C])."""
        return np.stack([self[short, layer] for layer in range(self.n_layer)])

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} arrays: {', '.join(list(self)[:4])}{', ...' if len(self) > 4 else ''})"


def select_names(config: GPT2Config, names) -> list[str]:
    """The hook names a `names` argument asks for: None (all), one name, an iterable of names
    (full or short, e.g. ("pattern", 2)), or a predicate `name -> bool` (TransformerLens' names_filter)."""
    every = hook_names(config)
    if names is None:
        return every
    if callable(names):
        return [n for n in every if names(n)]
    if isinstance(names, (str, tuple)):
        names = [names]
    try:
        items = list(names)
    except TypeError:
        raise InputError(
            f"names must be a hook name, a list of them or a function of a name, got {shown(names)}"
        ) from None
    chosen = []
    for item in items:
        name = act_name(item)
        if name not in every:
            raise InputError(
                f"no hook named {name!r} in this model ({config.n_layer} layers: blocks.0 to "
                f"blocks.{config.n_layer - 1}); see engine.capture.hook_names"
            )
        chosen.append(name)
    return chosen


def make_hooks(
    config: GPT2Config,
    capture: Iterable[str],
    fwd_hooks: Iterable[Intervention],
    batched: bool,
    store: dict[str, np.ndarray],
):
    """A hooks function for `model(ids, hooks=...)`: applies the interventions at their names, then
    copies the named arrays into `store` (the batch axis dropped when the input had none).
    Returns None when there is nothing to do, so that the model takes its plain path."""
    capture = set(capture)
    interventions: dict[str, list] = {}
    known = set(hook_names(config))
    for item in fwd_hooks:
        if not (isinstance(item, tuple) and len(item) == 2 and callable(item[1])):
            raise InputError(f"an intervention must be a pair (hook name, function), got {shown(item)}")
        name = act_name(item[0])
        if name not in known:
            raise InputError(f"cannot intervene at {name!r}: no such hook in this model ({config.n_layer} layers)")
        interventions.setdefault(name, []).append(item[1])
    if not capture and not interventions:
        return None

    def hooks(name: str, array: np.ndarray) -> np.ndarray:
        for intervene in interventions.get(name, ()):
            result = intervene(array)
            if result is not None:
                result = np.asarray(result)
                if result.shape != array.shape:
                    raise InputError(f"the intervention at {name} returned shape {result.shape}, not {array.shape}")
                array = result.astype(np.float32, copy=False)
        if name in capture:
            # A copy: the model may go on to overwrite its array in place (the MLP's GELU does).
            store[name] = np.array(array if batched else array[0], dtype=np.float32, copy=True)
        return array

    return hooks


def run_with_cache(model, ids, names=None, fwd_hooks: Iterable[Intervention] = (), **forward_options):
    """Run the model on `ids` ([T] or [B, T]) and capture intermediates.

    names: which to capture (see `select_names`; default all). fwd_hooks: interventions applied
    during the pass. forward_options go to `model(...)` (cache=, left_padding=, logits_to_keep=):
    with a KV cache, this call's positions are captured, and hook_pattern covers every key slot.
    Returns (logits float32 [T, V] or [B, T, V], ActivationCache).
    """
    ids, batched = checked_ids(model, ids)
    store: dict[str, np.ndarray] = {}
    hooks = make_hooks(model.config, select_names(model.config, names), fwd_hooks, batched, store)
    logits = model(ids, hooks=hooks, **forward_options)
    ordered = {name: store[name] for name in hook_names(model.config) if name in store}
    return logits, ActivationCache(ordered, model.config.n_layer)


def run_with_hooks(model, ids, fwd_hooks: Iterable[Intervention] = (), **forward_options) -> np.ndarray:
    """The logits of `model(ids)` with the interventions applied during the pass."""
    ids, batched = checked_ids(model, ids)
    hooks = make_hooks(model.config, (), fwd_hooks, batched, {})
    return model(ids, hooks=hooks, **forward_options)


def checked_ids(model, ids):
    """(ids as the model takes them, whether they are a batch [B, T]), checked first, so that what
    is done with their shape before the model call never meets ragged rows or other junk."""
    checked, batched = check_token_ids(ids, model.config.vocab_size)  # int64 [B, T]
    return (checked if batched else checked[0]), batched


class StepwiseCapture:
    """Capture across the calls of an incremental decode (a prompt, then one token per step through
    the KV cache), as if the whole sequence had gone through at once:

        capture = StepwiseCapture(model.config, names=[("pattern", 0), ("post", 1)])
        model(prompt_ids, cache=kv, hooks=capture.hooks); model([token], cache=kv, hooks=capture.hooks) ...
        capture.cache()   # hook_post [N, I]; hook_pattern [H, N, N] (row t: query t over key slots 0..t)

    Each call's positions are appended along the token axis; attention rows, which cover the key
    slots seen so far, are placed in an [N, N] (query, key slot) square, zero where not visible.
    `batched`: keep the batch axis (a batch decode) instead of dropping it.
    """

    def __init__(self, config: GPT2Config, names=None, batched: bool = False):
        self.config = config
        self.names = set(select_names(config, names))
        self.batched = batched
        self.steps: dict[str, list[np.ndarray]] = {}

    def hooks(self, name: str, array: np.ndarray) -> np.ndarray:
        if name in self.names:
            self.steps.setdefault(name, []).append(np.array(array, dtype=np.float32, copy=True))
        return array

    def cache(self) -> ActivationCache:
        captured = {}
        for name in hook_names(self.config):
            if name not in self.steps:
                continue
            parts = self.steps[name]
            if name.endswith("hook_pattern"):  # parts: [B, H, T_call, S_so_far]
                B, H, _, N = parts[-1].shape
                square = np.zeros((B, H, N, N), dtype=np.float32)
                row = 0
                for part in parts:
                    square[:, :, row : row + part.shape[2], : part.shape[3]] = part
                    row += part.shape[2]
                whole = square
            else:
                whole = np.concatenate(parts, axis=1)  # [B, N, ...]
            captured[name] = whole if self.batched else whole[0]
        return ActivationCache(captured, self.config.n_layer)


# ----------------------------------------------------------------------------------------------
# Interventions: (hook name, function) pairs for fwd_hooks


def _indices(what: str, values, size: int, where: str) -> np.ndarray:
    index = np.atleast_1d(np.asarray(values))
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise InputError(f"{what} must be a non-empty list of integers, got {shown(values)}")
    bad = index[(index < 0) | (index >= size)]
    if bad.size:
        raise InputError(f"{what[:-1]} {int(bad[0])} is out of range: {where} has {size} (0 to {size - 1})")
    return index.astype(np.int64)


def _assign(array: np.ndarray, units: np.ndarray, positions, values, what: str, where: str) -> None:
    """Set units (neurons of [B, T, I], or heads of [B, T, H, D]) at all or some positions to values."""
    rows: slice | np.ndarray
    if positions is None:
        rows, cols = slice(None), units
    else:
        rows = _indices("positions", positions, array.shape[1], "this call's tokens")[:, None]  # [P, 1]
        cols = units[None, :]  # [1, n]: with rows, selects a [P, n] grid
    target = (slice(None), rows, cols) + (slice(None),) * (array.ndim - 3)
    try:
        array[target] = np.asarray(values, dtype=np.float32)
    except ValueError as error:
        raise InputError(f"cannot set {what} of {where}: {error}") from None


def _set_units(name: str, axis: int, what: str, layer: int, holder: str, units, values, positions) -> Intervention:
    """The intervention at hook `name` that sets `units` (indices along `axis` of its array, called
    `what` in messages, held by `holder`, e.g. "layer 1's MLP") to `values`, at all positions or some."""

    def intervene(array):  # [B, T, I] (neurons, axis -1) or [B, T, H, D] (heads, axis 2)
        index = _indices(what, units, array.shape[axis], holder)
        _assign(array, index, positions, values, what, f"layer {layer}")
        return array

    return name, intervene


def set_neurons(layer: int, neurons, values, positions=None) -> Intervention:
    """Set MLP neurons (post-GELU, `blocks.{layer}.mlp.hook_post`) to `values`, broadcast to
    [B, T, len(neurons)] (or [B, len(positions), len(neurons)] when `positions` are given)."""
    holder = f"layer {layer}'s MLP"
    return _set_units(f"blocks.{layer}.mlp.hook_post", -1, "neurons", layer, holder, neurons, values, positions)


def zero_neurons(layer: int, neurons, positions=None) -> Intervention:
    """Zero MLP neurons (post-GELU) of one layer, at every position or the given ones."""
    return set_neurons(layer, neurons, 0.0, positions)


def set_heads(layer: int, heads, values, positions=None) -> Intervention:
    """Set attention heads' outputs (`blocks.{layer}.attn.hook_z`, before the output projection)
    to `values`, broadcast to [B, T, len(heads), D]: e.g. the same heads' z from another run
    (activation patching)."""
    return _set_units(f"blocks.{layer}.attn.hook_z", 2, "heads", layer, f"layer {layer}", heads, values, positions)


def zero_heads(layer: int, heads, positions=None) -> Intervention:
    """Zero attention heads' outputs z: the heads then add only c_proj's bias share (nothing of their own)."""
    return set_heads(layer, heads, 0.0, positions)
