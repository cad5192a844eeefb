"""The benchmark's pure helpers: the GGUF writer's names, types and tokenizer, and the agreement
measures. No peer is needed (gguf, llama-cpp-python and onnxruntime are imported only inside the
functions that write or run them), so these run in CI; the benchmark itself is not run here."""

import json
import sys

import numpy as np
import pytest
from conftest import REPO, shared_path

sys.path.insert(0, str(REPO))  # benchmarks/ is not an installed package

from benchmarks.fidelity import greedy_agreement, log_softmax
from benchmarks.gguf_export import byte_to_char, gguf_name, recover_merges, tensor_precision
from benchmarks.roofline import BYTES_PER_WEIGHT, decode_bytes
from benchmarks.run import token_agreement
from engine.state.synthetic import preset_config
from engine.state.weights import parameter_shapes


def test_every_checkpoint_tensor_has_a_llama_cpp_name():
    config = preset_config("gpt2", n_layer=2)
    names = {name: gguf_name(name) for name in parameter_shapes(config)}
    assert names["wte.weight"] == "token_embd.weight"
    assert names["wpe.weight"] == "position_embd.weight"
    assert names["ln_f.bias"] == "output_norm.bias"
    assert names["h.1.attn.c_attn.weight"] == "blk.1.attn_qkv.weight"
    assert names["h.0.mlp.c_proj.bias"] == "blk.0.ffn_down.bias"
    assert len(set(names.values())) == len(names)  # no two tensors share a name
    with pytest.raises(KeyError, match="h.0.attn.bias"):
        gguf_name("h.0.attn.bias")  # the causal-mask buffer is never written


def test_matrices_take_the_precision_and_the_rest_stays_f32():
    assert tensor_precision("blk.0.ffn_up.weight", (3072, 768), "q8_0") == "q8_0"
    assert tensor_precision("token_embd.weight", (50257, 768), "f16") == "f16"
    assert tensor_precision("position_embd.weight", (1024, 768), "q8_0") == "f32"  # as llama.cpp's converter
    assert tensor_precision("blk.0.ffn_up.bias", (3072,), "q8_0") == "f32"
    assert tensor_precision("blk.0.attn_norm.weight", (768,), "f16") == "f32"


def test_merges_are_recovered_from_a_small_vocabulary():
    tokens = [b"a", b"b", b"c", b"ab", b"abc", b"bc", b"bcbc"]
    assert recover_merges(tokens) == [(0, 1), (3, 2), (1, 2), (5, 5)]


def test_gpt2_vocabulary_matches_the_published_files():
    from benchmarks.gguf_export import gpt2_vocabulary
    from engine.state.tokenizer import gpt2_tokenizer

    tokens, types, merges = gpt2_vocabulary(gpt2_tokenizer())
    encoder = json.loads(shared_path("tokenizer/encoder.json").read_text(encoding="utf-8"))
    assert tokens == sorted(encoder, key=encoder.get)
    assert types.count(3) == 1 and types[50256] == 3 and tokens[50256] == "<|endoftext|>"
    published = [
        line
        for line in shared_path("tokenizer/vocab.bpe").read_text(encoding="utf-8").split("\n")
        if line and not line.startswith("#version")
    ]
    assert merges == published


def test_byte_map_is_a_bijection_onto_printable_characters():
    chars = byte_to_char()
    assert len(set(chars.values())) == 256 and chars[ord("A")] == "A" and chars[ord(" ")] == "\u0120"


def test_agreement_counts_steps_before_the_first_difference():
    reference = [[1, 2, 3, 4], [5, 6, 7, 8]]
    got = token_agreement(reference, [[1, 2, 3, 4], [5, 9, 7, 8]])
    assert (got["share"], got["row"], got["step"], got["identical"]) == (5 / 8, 1, 1, False)
    assert token_agreement(reference, reference)["identical"]
    g = greedy_agreement(reference, [[1, 2, 0, 0], [5, 6, 7, 8]])
    assert g["prefix_tokens"] == [2, 4] and g["identical"] == 1 and g["share"] == 6 / 8


def test_log_softmax_normalizes():
    lp = log_softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32))
    assert np.allclose(np.exp(lp).sum(axis=-1), 1.0)


def test_decode_bytes_shrink_only_the_matrices():
    config = preset_config("gpt2")
    f32 = decode_bytes(config, 1, 0, BYTES_PER_WEIGHT["float32"])["weights"]
    q8 = decode_bytes(config, 1, 0, BYTES_PER_WEIGHT["Q8_0"])["weights"]
    matrices = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 50257 * 768
    assert f32 - q8 == pytest.approx((4 - 34 / 32) * matrices)
