"""The NumPy backward pass against PyTorch autograd: each layer's backward half on its own, then the
whole network's input gradient against Hugging Face GPT2LMHeadModel (inputs_embeds.grad).

Relative error, throughout: max|ours - reference| / max|reference|, over the whole gradient array.
The bound is 1e-4 (the issue's). Measured values are printed (pytest -s shows them).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import hf_model

from engine import GPT2, InputError
from engine.analysis import backward as bw
from engine.base.config import GPT2Config
from engine.state.synthetic import preset_config, random_parameters
from engine.state.weights import weights_from_state_dict

BOUND = 1e-4
RNG = np.random.default_rng(20240611)


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def assert_close(ours, reference, label):
    assert ours.dtype == np.float32, f"{label}: {ours.dtype}"
    assert ours.shape == reference.shape, label
    error = relative_error(ours, reference)
    print(f"{label}: relative error {error:.2e}")
    assert error <= BOUND, f"{label}: relative error {error:.2e} > {BOUND}"


def randn(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def torch_grad(forward, x: np.ndarray, d_out: np.ndarray) -> np.ndarray:
    """d(sum(forward(x) * d_out))/dx by autograd: the vector-Jacobian product a backward half computes."""
    xt = torch.tensor(x, requires_grad=True)
    (forward(xt) * torch.tensor(d_out)).sum().backward()
    return xt.grad.numpy()


# ----------------------------------------------------------------------------------------------
# Layer by layer, on a block with an odd head size (3 heads of 13)

CONFIG = GPT2Config(n_layer=2, n_head=3, n_embd=39, n_positions=32, vocab_size=101)
WEIGHTS = weights_from_state_dict(random_parameters(CONFIG, seed=3), CONFIG)
B, T, C = 2, 7, CONFIG.n_embd


def t(a):
    return torch.tensor(a)


def torch_layer_norm(x, ln):
    return F.layer_norm(x, (x.shape[-1],), t(ln.weight), t(ln.bias), CONFIG.layer_norm_epsilon)


def torch_linear(x, p):
    return x @ t(p.weight) + t(p.bias)


def torch_attention(x, w, scale):
    q, k, v = torch_linear(x, w.c_attn).split(C, dim=-1)
    heads = lambda a: a.view(a.shape[0], a.shape[1], CONFIG.n_head, -1).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    scores = (q @ k.transpose(-1, -2)) * scale
    causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
    probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    z = (probs @ v).transpose(1, 2).reshape(x.shape)
    return torch_linear(z, w.c_proj)


def torch_mlp(x, w):
    return torch_linear(F.gelu(torch_linear(x, w.c_fc), approximate="tanh"), w.c_proj)


def torch_block(x, w, scale):
    x = x + torch_attention(torch_layer_norm(x, w.ln_1), w.attn, scale)
    return x + torch_mlp(torch_layer_norm(x, w.ln_2), w.mlp)


def test_layer_norm_backward():
    x, d_out = randn(B, T, C, scale=3.0) + 1.0, randn(B, T, C)
    ln = WEIGHTS.h[0].ln_1
    out, saved = bw.layer_norm_forward(x, ln, CONFIG.layer_norm_epsilon)
    assert_close(
        bw.layer_norm_backward(d_out, saved), torch_grad(lambda a: torch_layer_norm(a, ln), x, d_out), "layer_norm"
    )


def test_linear_backward():
    x, p = randn(B, T, C), WEIGHTS.h[0].mlp.c_fc
    out, saved = bw.linear_forward(x, p)
    d_out = randn(*out.shape)
    assert_close(bw.linear_backward(d_out, saved), torch_grad(lambda a: torch_linear(a, p), x, d_out), "linear")


def test_gelu_backward():
    x = np.concatenate(
        [randn(B, T, 50, scale=3.0), np.linspace(-8, 8, 2 * T * 10, dtype=np.float32).reshape(B, T, 10)], -1
    )
    out, saved = bw.gelu_forward(x)
    d_out = randn(*x.shape)
    reference = torch_grad(lambda a: F.gelu(a, approximate="tanh"), x, d_out)
    assert_close(out, F.gelu(t(x), approximate="tanh").numpy(), "gelu forward")
    assert_close(bw.gelu_backward(d_out, saved), reference, "gelu")


def test_softmax_backward():
    scores, d_probs = randn(B, 3, T, T, scale=2.0), randn(B, 3, T, T)
    probs = torch.softmax(t(scores), -1).numpy()
    assert_close(
        bw.softmax_backward(d_probs, probs), torch_grad(lambda a: torch.softmax(a, -1), scores, d_probs), "softmax"
    )


def test_attention_backward_odd_head_size():
    x, d_out = randn(B, T, C), randn(B, T, C)
    scale = CONFIG.head_dim**-0.5
    out, saved = bw.attention_forward(x, WEIGHTS.h[1].attn, CONFIG.n_head, scale)
    with torch.no_grad():
        assert_close(out, torch_attention(t(x), WEIGHTS.h[1].attn, scale).numpy(), "attention forward")
    reference = torch_grad(lambda a: torch_attention(a, WEIGHTS.h[1].attn, scale), x, d_out)
    assert_close(bw.attention_backward(d_out, saved), reference, "attention")


def test_mlp_backward():
    x, d_out = randn(B, T, C), randn(B, T, C)
    out, saved = bw.mlp_forward(x, WEIGHTS.h[0].mlp)
    assert_close(bw.mlp_backward(d_out, saved), torch_grad(lambda a: torch_mlp(a, WEIGHTS.h[0].mlp), x, d_out), "mlp")


def test_block_backward():
    x, d_out = randn(B, T, C), randn(B, T, C)
    scale = CONFIG.head_dim**-0.5
    out, saved = bw.block_forward(x, WEIGHTS.h[1], CONFIG, layer=1)
    with torch.no_grad():
        assert_close(out, torch_block(t(x), WEIGHTS.h[1], scale).numpy(), "block forward")
    assert_close(
        bw.block_backward(d_out, saved), torch_grad(lambda a: torch_block(a, WEIGHTS.h[1], scale), x, d_out), "block"
    )


@pytest.mark.parametrize("of", ["logprob", "prob"])
def test_target_backward(of):
    logits = randn(B, CONFIG.vocab_size, scale=3.0)
    value, probs = bw.target_forward(logits, 7, of)
    f = (lambda a: torch.log_softmax(a, -1)[:, 7]) if of == "logprob" else (lambda a: torch.softmax(a, -1)[:, 7])
    assert_close(value, f(t(logits)).numpy(), f"{of} forward")
    assert_close(bw.target_backward(probs, 7, of), torch_grad(f, logits, np.ones(B, dtype=np.float32)), of)


def test_network_forward_equals_the_model():
    model = GPT2(CONFIG, WEIGHTS)
    ids = RNG.integers(0, CONFIG.vocab_size, size=(3, 11))
    tok = WEIGHTS.wte[ids]
    x = tok + WEIGHTS.wpe[:11]
    logits, _ = bw.gpt2_forward(WEIGHTS, CONFIG, x, np.arange(11))
    reference = model(ids)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    some, _ = bw.gpt2_forward(WEIGHTS, CONFIG, x, [4, 10])
    np.testing.assert_allclose(some, reference[:, [4, 10]], rtol=0, atol=1e-5 * np.abs(reference).max())


# ----------------------------------------------------------------------------------------------
# The whole network against Hugging Face: d f / d inputs_embeds, where HF adds the positions itself


def hf_input_gradients(model_dir, ids, target, position, of) -> np.ndarray:
    hf = hf_model(model_dir)
    embeds = hf.transformer.wte(torch.as_tensor(np.asarray(ids))[None]).detach().clone().requires_grad_(True)
    logits = hf(inputs_embeds=embeds).logits[0, position]
    value = torch.log_softmax(logits, -1)[target] if of == "logprob" else torch.softmax(logits, -1)[target]
    value.backward()
    return embeds.grad[0].numpy()


def check_against_hf(model_dir, model, ids, label, every_case=True, seed=0):
    """log p and p; at the last position for the top token and a random one, at the middle for the
    next token, at the first for a random one (every_case=False: two of those, to save time)."""
    rng = np.random.default_rng(seed)  # the same cases whatever ran before
    reference_logits = model(ids)
    middle = len(ids) // 2
    cases = [
        (-1, int(reference_logits[-1].argmax())),
        (-1, int(rng.integers(model.config.vocab_size))),
        (middle, int(ids[middle + 1])),
        (0, int(rng.integers(model.config.vocab_size))),
    ]
    cases = [(of, *case) for of in ("logprob", "prob") for case in cases]
    if not every_case:
        cases = [cases[0], cases[6]]  # log p of the top token at the last position; p of the next token
    worst = 0.0
    for of, position, target in cases:
        ours = model.input_gradients(ids, target, position=position, of=of)
        reference = hf_input_gradients(model_dir, ids, target, position, of)
        assert ours.dtype == np.float32 and ours.shape == (len(ids), model.config.n_embd)
        error = relative_error(ours, reference)
        worst = max(worst, error)
        print(f"{label} of={of} position={position} target={target}: relative error {error:.2e}")
        assert error <= BOUND, f"{label} of={of} position={position}: {error:.2e}"
        assert not ours[position % len(ids) + 1 :].any(), "tokens after the position must get exactly 0"
    print(f"{label}: worst relative error {worst:.2e}")


SHAPES = {  # label -> (directory name, config)
    "2 layers, 4 heads of 24": ("small", GPT2Config(n_layer=2, n_head=4, n_embd=96, n_positions=128)),  # = small_dir
    "3 layers, 5 heads of 13 (odd)": ("odd-heads", GPT2Config(n_layer=3, n_head=5, n_embd=65, n_positions=64)),
    "2 layers, 1 head of 7, scaled by 1/(layer + 1)": (
        "one-head",
        GPT2Config(n_layer=2, n_head=1, n_embd=7, n_positions=16, scale_attn_by_inverse_layer_idx=True),
    ),
}


@pytest.mark.parametrize("label", list(SHAPES))
def test_input_gradients_match_autograd_synthetic(synthetic, label):
    name, config = SHAPES[label]
    model_dir = synthetic(name, config)
    model = GPT2.from_pretrained(model_dir)
    ids = np.random.default_rng(1).integers(0, config.vocab_size, size=min(23, config.n_positions))
    check_against_hf(model_dir, model, ids, label)


def test_input_gradients_match_autograd_124M(synthetic):
    model_dir = synthetic("gpt2-124M-full", preset_config("gpt2"))  # shared with test_parity
    model = GPT2.from_pretrained(model_dir)
    ids = np.random.default_rng(2).integers(0, 50257, size=17)
    check_against_hf(model_dir, model, ids, "gpt2 124M shape, 12 layers", every_case=False)


def test_input_gradients_match_autograd_tiny_shakespeare(tiny_model_dir, tiny_model):
    ids = np.array(tiny_model.tokenizer.encode("ROMEO: What light through yonder window breaks? It is the east"))
    check_against_hf(tiny_model_dir, tiny_model, ids, "shakespeare-gpt2-tiny")


def test_float32_gradients_are_as_close_to_float64_as_torch_is(tiny_model_dir, tiny_model):
    """Against HF run in float64, ours (float32) should err no more than HF's own float32 run does:
    the differences above are float32 rounding on both sides, not a mistake on ours."""
    from transformers import GPT2LMHeadModel

    hf64 = GPT2LMHeadModel.from_pretrained(str(tiny_model_dir), dtype=torch.float64, attn_implementation="eager").eval()
    ids = np.array(tiny_model.tokenizer.encode("ROMEO: What light through yonder window breaks? It is the east"))
    for of in ("logprob", "prob"):
        embeds = hf64.transformer.wte(torch.as_tensor(ids)[None]).detach().clone().requires_grad_(True)
        logits = hf64(inputs_embeds=embeds).logits[0, -1]
        (torch.log_softmax(logits, -1)[11] if of == "logprob" else torch.softmax(logits, -1)[11]).backward()
        exact = embeds.grad[0].numpy()
        ours = relative_error(tiny_model.input_gradients(ids, 11, of=of), exact)
        torch32 = relative_error(hf_input_gradients(tiny_model_dir, ids, 11, -1, of), exact)
        print(f"of={of}: vs float64, ours {ours:.2e}, transformers float32 {torch32:.2e}")
        assert ours <= max(torch32, 2e-5)


def test_input_gradient_is_the_gradient_of_the_sum_of_embeddings(tiny_model):
    """A finite-difference check on the trained model, independent of any autograd: f(x + h g/|g|)."""
    ids = np.array(tiny_model.tokenizer.encode("To be, or not to be"))
    target = 11
    g = tiny_model.input_gradients(ids, target).astype(np.float64)
    tok, pos = bw.embedding_forward(tiny_model.weights, ids)

    def f(x):
        logits = bw.gpt2_forward(tiny_model.weights, tiny_model.config, x[None], [len(ids) - 1])[0]
        return float(bw.target_forward(logits[:, 0], target, "logprob")[0][0])

    h = 1e-2
    direction = (g / np.linalg.norm(g)).astype(np.float32)
    slope = (f(tok + pos + h * direction) - f(tok + pos - h * direction)) / (2 * h)
    assert slope == pytest.approx(np.linalg.norm(g), rel=1e-2)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(target_id=50257), "target_id 50257 is out of range"),
        (dict(target_id=-1), "target_id -1 is out of range"),
        (dict(target_id=1.5), "target_id must be an integer"),
        (dict(target_id=3, position=4), "position 4 is out of range for 4 tokens"),
        (dict(target_id=3, position=-5), "position -5 is out of range"),
        (dict(target_id=3, of="logit"), "of must be one of"),
    ],
)
def test_input_gradients_refuse_bad_arguments(tiny_model, args, message):
    with pytest.raises(InputError, match=message):
        tiny_model.input_gradients([1, 2, 3, 4], **args)


def test_input_gradients_refuse_batches_and_bad_ids(tiny_model):
    with pytest.raises(InputError, match=r"one sequence"):
        tiny_model.input_gradients([[1, 2], [3, 4]], 5)
    with pytest.raises(InputError, match="out of range for vocab_size"):
        tiny_model.input_gradients([1, 60000], 5)
    with pytest.raises(InputError, match="exceed the model's context"):
        tiny_model.input_gradients(list(range(300)), 5)
