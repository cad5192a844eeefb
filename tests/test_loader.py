"""Loading checkpoints: both key spellings, shards, dtypes, and a clear error for each kind of bad file."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from engine import GPT2, CheckpointError, ConfigError
from engine.base.config import GPT2Config
from engine.state.synthetic import random_parameters, write_checkpoint

CONFIG = GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)


@pytest.fixture
def good_dir(tmp_path):
    return write_checkpoint(tmp_path / "good", CONFIG, seed=3)


def load(model_dir):
    return GPT2.from_pretrained(model_dir)


def reference_weights(seed=3):
    return random_parameters(CONFIG, seed)


def test_published_spelling_loads_and_skips_mask_buffers(good_dir):
    model = load(good_dir)
    params = reference_weights()
    np.testing.assert_array_equal(model.weights.h[1].attn.c_attn.weight, params["h.1.attn.c_attn.weight"])
    assert model.weights.lm_head is model.weights.wte  # tied, no copy


def test_save_pretrained_spelling_loads_the_same(tmp_path, good_dir):
    prefixed = write_checkpoint(tmp_path / "prefixed", CONFIG, seed=3, prefix=True, mask_buffers=False)
    a, b = load(good_dir), load(prefixed)
    ids = np.arange(10)
    np.testing.assert_array_equal(a(ids), b(ids))


def test_sharded_checkpoint_loads_the_same(tmp_path, good_dir):
    sharded = write_checkpoint(tmp_path / "sharded", CONFIG, seed=3, shards=3)
    assert not (sharded / "model.safetensors").exists()
    ids = np.arange(10)
    np.testing.assert_array_equal(load(sharded)(ids), load(good_dir)(ids))


@pytest.mark.parametrize("dtype,torch_dtype", [("float16", torch.float16), ("bfloat16", torch.bfloat16)])
def test_half_precision_widens_exactly(tmp_path, dtype, torch_dtype):
    model = load(write_checkpoint(tmp_path / dtype, CONFIG, seed=3, dtype=dtype))
    original = reference_weights()["h.0.mlp.c_fc.weight"]
    expected = torch.from_numpy(original).to(torch_dtype).to(torch.float32).numpy()
    loaded = model.weights.h[0].mlp.c_fc.weight
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, expected)


def test_lm_head_beside_tied_embeddings_is_ignored(tmp_path):
    params = reference_weights()
    params["lm_head.weight"] = params["wte.weight"].copy()
    model = load(write_checkpoint(tmp_path / "with-head", CONFIG, params=params))
    assert model.weights.lm_head is model.weights.wte


# --- bad directories: each gets a CheckpointError naming the file and the tensor -----------------


def rewrite_tensors(model_dir, change):
    """Rewrite model.safetensors after change(dict of float32 arrays) edits it in place."""
    from safetensors.numpy import load_file

    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def test_not_a_safetensors_file(good_dir):
    (good_dir / "model.safetensors").write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load(good_dir)


def test_truncated_file(good_dir):
    path = good_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load(good_dir)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_a_tensor_cut_short_while_reading_is_named_once(tmp_path, dtype):
    """The file shrinks between reading the header and the data: one clear error, file and tensor named once."""
    from engine.state.loader import read_header, read_tensor_into

    path = tmp_path / "one.safetensors"
    save_file({"w": np.arange(10, dtype=np.float32 if dtype == "F32" else np.float16)}, str(path))
    header, data_start = read_header(path)
    path.write_bytes(path.read_bytes()[:-3])  # an odd number of bytes short
    with pytest.raises(CheckpointError, match=r"one\.safetensors: tensor 'w' is truncated") as caught:
        read_tensor_into(path, "w", header["w"] | {"dtype": dtype}, data_start, np.empty(10, np.float32))
    assert str(caught.value).count("one.safetensors") == 1


def test_missing_tensor(good_dir):
    rewrite_tensors(good_dir, lambda t: t.pop("h.1.mlp.c_proj.bias"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensor 'h\.1\.mlp\.c_proj\.bias'"):
        load(good_dir)


def test_wrong_shape(good_dir):
    def transpose(t):
        t["h.0.attn.c_proj.weight"] = np.ascontiguousarray(t["h.0.attn.c_proj.weight"][:, :8])

    rewrite_tensors(good_dir, transpose)
    with pytest.raises(
        CheckpointError, match=r"'h\.0\.attn\.c_proj\.weight' has shape \[16, 8\] but config\.json implies \[16, 16\]"
    ):
        load(good_dir)


def test_unsupported_dtype(good_dir):
    rewrite_tensors(good_dir, lambda t: t.update({"ln_f.bias": t["ln_f.bias"].astype(np.float64)}))
    with pytest.raises(CheckpointError, match=r"'ln_f\.bias' has dtype F64; supported: F32, F16, BF16"):
        load(good_dir)


def test_config_with_fewer_layers_than_the_weights(good_dir):
    config = json.loads((good_dir / "config.json").read_text())
    (good_dir / "config.json").write_text(json.dumps(config | {"n_layer": 1}))
    with pytest.raises(CheckpointError, match=r"weights have 2 layers .* config\.json says n_layer=1"):
        load(good_dir)


def test_config_with_another_width_than_the_weights(good_dir):
    config = json.loads((good_dir / "config.json").read_text())
    (good_dir / "config.json").write_text(json.dumps(config | {"n_embd": 32}))
    with pytest.raises(
        CheckpointError, match=r"'wte\.weight' has shape \[50257, 16\] but config\.json implies \[50257, 32\]"
    ):
        load(good_dir)


def test_unexpected_tensor(good_dir):
    rewrite_tensors(good_dir, lambda t: t.update({"score.weight": np.zeros((2, 16), np.float32)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'score\.weight'"):
        load(good_dir)


def test_tensor_spelled_twice(good_dir):
    rewrite_tensors(good_dir, lambda t: t.update({"transformer.ln_f.bias": t["ln_f.bias"]}))
    with pytest.raises(CheckpointError, match=r"'ln_f\.bias' appears twice"):
        load(good_dir)


def test_no_weights_file(good_dir):
    (good_dir / "model.safetensors").unlink()
    (good_dir / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"no model\.safetensors or model\.safetensors\.index\.json \(found pytorch_model\.bin"
    ):
        load(good_dir)


def test_index_naming_a_missing_shard(tmp_path):
    sharded = write_checkpoint(tmp_path / "sharded", CONFIG, shards=2)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"index\.json: lists shard model-00002-of-00002\.safetensors, which is missing"
    ):
        load(sharded)


def test_corrupt_index(tmp_path):
    sharded = write_checkpoint(tmp_path / "sharded", CONFIG, shards=2)
    (sharded / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: not valid JSON \(Expecting"):
        load(sharded)


# --- config.json ----------------------------------------------------------------------------------


def edit_config(model_dir, **fields):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(config | fields))


def test_missing_config(good_dir):
    (good_dir / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json: no config\.json"):
        load(good_dir)


def test_unreadable_config(good_dir):
    (good_dir / "config.json").write_text("{")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON \(Expecting"):
        load(good_dir)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"activation_function": "gelu"}, r"activation_function 'gelu' is not supported"),
        ({"activation_function": "relu"}, r"activation_function 'relu' is not supported"),
        ({"n_head": 3}, r"n_embd=16 is not divisible by n_head=3"),
        ({"add_cross_attention": True}, r"add_cross_attention=true"),
        ({"model_type": "llama"}, r"model_type is 'llama', expected 'gpt2'"),
        ({"n_layer": 0}, r"n_layer must be a positive integer"),
        ({"n_embd": "16"}, r"n_embd must be a positive integer"),
        ({"layer_norm_epsilon": -1}, r"layer_norm_epsilon must be a positive number"),
    ],
)
def test_config_the_engine_cannot_run_is_refused(good_dir, fields, message):
    edit_config(good_dir, **fields)
    with pytest.raises(ConfigError, match=message):
        load(good_dir)


def test_gelu_pytorch_tanh_is_accepted(good_dir):
    edit_config(good_dir, activation_function="gelu_pytorch_tanh")
    assert load(good_dir).config.activation_function == "gelu_pytorch_tanh"


def test_old_n_ctx_spelling(tmp_path, good_dir):
    config = json.loads((good_dir / "config.json").read_text())
    del config["n_positions"]
    assert GPT2Config.from_dict(config).n_positions == 32


def test_loading_does_not_modify_the_directory(good_dir):
    before = {p.name: p.read_bytes() for p in good_dir.iterdir()}
    load(good_dir)
    assert {p.name: p.read_bytes() for p in good_dir.iterdir()} == before
