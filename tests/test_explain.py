"""model.explain and `gpt2 explain`: the result holds what each analysis gives on its own, for the
tokens generation produced (or a given continuation); sampling options mean what they mean in
generate; contrast, attention choices and several inputs with shared factors; it survives a
save/load round trip as one .npz file (and a version 1 file still loads); it stays small for the
124M shape; bad arguments and files get one clear line, before any work, and the command writes
both of its files or neither."""

import json
import os

import numpy as np
import pytest
from test_cli import assert_user_error, gpt2

from engine import InputError
from engine.analysis.explain import FORMAT_VERSION, Explanation, Explanations
from engine.analysis.factors import factorise
from engine.analysis.saliency import METHODS, attribute_all, attribute_contrast, attribute_targets
from engine.base.errors import OutputError
from engine.base.files import write_together
from engine.base.numeric import log_softmax

PROMPT = "ROMEO: What light through yonder window breaks?"


@pytest.fixture(scope="module")
def explained(tiny_model):
    return tiny_model.explain(PROMPT, max_new_tokens=8, factors=5)


def test_tokens_are_the_prompt_and_what_generation_produced(tiny_model, explained):
    e = explained
    prompt_ids = tiny_model.tokenizer.encode(PROMPT)
    generated = tiny_model.generate(PROMPT, max_new_tokens=8)
    assert e.prompt_length == len(prompt_ids) and e.generated == 8
    assert e.token_ids.tolist() == prompt_ids + generated.token_ids
    assert e.text == PROMPT + generated.text and e.finish_reason == generated.finish_reason
    assert all(e.pieces[i] == t for i, t in zip(e.token_ids.tolist(), e.tokens))
    assert e.generation["temperature"] == 0.0 and e.generation["max_new_tokens"] == 8 and not e.continuation_given


def test_saliency_rows_are_the_saliency_of_each_generated_token(tiny_model, explained):
    e, P = explained, explained.prompt_length
    logp = log_softmax(tiny_model(e.token_ids))  # [N, V]
    for g in range(e.generated):
        index = P + g  # the generated token, predicted at index - 1
        assert e.target_values[g] == pytest.approx(logp[index - 1, e.token_ids[index]], abs=1e-4)
        for method in METHODS:
            row = e.saliency[method][g]
            assert row.dtype == np.float32 and row.sum() == pytest.approx(1.0, abs=1e-5)
            assert not row[index:].any()  # only the tokens before it
        # 50 Gauss-Legendre steps (the default): completeness to 1e-4 here (20 steps leave gaps of 3%)
        assert abs(e.ig_sum[g] - e.ig_difference[g]) <= 1e-4 * max(1.0, abs(e.ig_difference[g]))
    for g in (0, e.generated - 1):
        single = attribute_all(tiny_model, e.token_ids, int(e.token_ids[P + g]), P + g - 1, METHODS, "logprob", 50)
        for method in METHODS:
            np.testing.assert_array_equal(e.saliency[method][g], single[method].scores)
        np.testing.assert_array_equal(e.erasure_drops[g], single["erasure"].attributions)
        np.testing.assert_array_equal(e.ig_contributions[g], single["integrated_gradients"].signed)
    # Signed integrated gradients: each token's attribution summed over the embedding; they add up to
    # the completeness sum, so the signed values share f(input) - f(baseline) out token by token.
    np.testing.assert_allclose(e.ig_contributions.sum(1), e.ig_sum, rtol=1e-4, atol=1e-5)
    assert e.signed("erasure") is e.erasure_drops and e.signed("gradient") is None


def test_contrast_is_the_difference_of_two_targets(tiny_model, explained):
    """The foils are the likeliest other tokens where each new token was predicted; the contrast of
    each method is the attribution of f(token) - f(foil), which is the difference of the two
    attributions (linearity), computed with one forward pass shared by the targets."""
    e, P = explained, explained.prompt_length
    assert e.contrast_ids.shape == (e.generated, 2)
    logits = tiny_model(e.token_ids)  # [N, V]
    logp = log_softmax(logits)
    for g in range(e.generated):
        row = logits[P + g - 1]
        others = [int(i) for i in np.argsort(-row, kind="stable") if i != e.token_ids[P + g]][:2]
        assert e.contrast_ids[g].tolist() == others
        np.testing.assert_allclose(e.contrast_values[g], logp[P + g - 1, others], atol=1e-4)
    g, j = 3, 1
    target, foil = int(e.token_ids[P + g]), int(e.contrast_ids[g, j])
    for method in METHODS:
        alone = attribute_contrast(tiny_model, e.token_ids, target, foil, P + g - 1, method)
        np.testing.assert_allclose(e.contrast_saliency[method][g, j], alone.scores, atol=2e-6)
        both = attribute_targets(tiny_model, e.token_ids, [target, foil], P + g - 1, [method])
        difference = both[0][method].attributions - both[1][method].attributions
        np.testing.assert_allclose(alone.attributions, difference, atol=1e-6)
        assert alone.foil_id == foil
        assert alone.value == pytest.approx(both[0][method].value - both[1][method].value, abs=1e-5)
        if method in e.contrast_signed:
            np.testing.assert_allclose(e.contrast_signed[method][g, j], alone.signed, atol=1e-5)
    # For log p the contrast is that of the logit difference; integrated gradients' completeness holds
    # for it too (the foil's baseline value is subtracted as well).
    done = attribute_contrast(tiny_model, e.token_ids, target, foil, P + g - 1, "integrated_gradients").completeness
    assert done["gap"] < 1e-3 * max(1.0, abs(done["output_difference"]))
    with pytest.raises(InputError, match="foil_id must differ from target_id"):
        attribute_contrast(tiny_model, e.token_ids, target, target, P + g - 1)
    np.testing.assert_array_equal(
        tiny_model.saliency(e.token_ids, target, P + g - 1, foil_id=foil),
        attribute_contrast(tiny_model, e.token_ids, target, foil, P + g - 1).scores,
    )


def test_lens_attention_and_factors_are_those_of_the_whole_sequence(tiny_model, explained):
    e, c = explained, tiny_model.config
    lens = tiny_model.logit_lens(e.token_ids, top_k=5)
    np.testing.assert_array_equal(e.lens_top_ids, lens.top_ids)
    np.testing.assert_array_equal(e.lens_target_ranks, lens.target_ranks)
    np.testing.assert_array_equal(e.lens_targets[:-1], e.token_ids[1:])  # the token that came next
    assert e.lens_layers == lens.layers
    _, cache = tiny_model.run_with_cache(e.token_ids)
    N = len(e.token_ids)
    assert e.attention.dtype == np.float16 and e.attention.shape == (c.n_layer, c.n_head, N, N)
    np.testing.assert_allclose(e.attention, cache.stack("pattern"), atol=5e-4)  # float16's rounding
    assert e.factor_layers == [[0], [1], [2], [3], [0, 1, 2, 3]]
    assert e.factor_activations.shape == (5, 5, N)
    both = factorise(np.stack([cache["post", 1]]), [1], 5)
    np.testing.assert_allclose(e.factor_activations[1], both.activations, rtol=1e-3, atol=1e-4)
    assert e.factor_top_neurons.shape == (5, 5, 10, 2)
    assert set(e.factor_top_neurons[1, :, :, 0].ravel()) == {1}
    every = factorise(cache.stack("post"), [0, 1, 2, 3], 5)
    assert [tuple(x) for x in e.factor_top_neurons[4, 0]] == [(layer, n) for layer, n, _ in every.top_neurons(0)]
    assert set(e.lens_top_ids.ravel().tolist()) | set(e.contrast_ids.ravel().tolist()) <= set(e.pieces)


def assert_same(ours, theirs):
    for field in ours.__dataclass_fields__:
        a, b = getattr(ours, field), getattr(theirs, field)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field
        elif field in ("saliency", "contrast_saliency", "contrast_signed"):
            assert list(a) == list(b) and all(np.array_equal(a[m], b[m]) for m in a), field
        else:
            assert a == b, field


def test_save_and_load_round_trip(explained, tmp_path):
    path = explained.save(tmp_path / "romeo.result")  # the name is kept as given
    assert path == tmp_path / "romeo.result" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["romeo.result"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as data:  # a plain .npz: arrays + JSON metadata, no pickles
        metadata = json.loads(data["metadata"].tobytes())
        assert metadata["format"] == "gpt2-engine explain" and metadata["version"] == FORMAT_VERSION == 2
        assert data["0/saliency.grad_x_input"].shape == (8, len(explained.token_ids))
        assert data["0/contrast_saliency.erasure"].shape == (8, 2, len(explained.token_ids))
    loaded = Explanation.load(path)
    assert_same(explained, loaded)
    json.dumps(loaded.to_dict())  # plain data all the way down


# The fields format version 2 added; a version 1 file has the others.
V2_FIELDS = {
    "generation",
    "continuation_given",
    "ig_contributions",
    "contrast_ids",
    "contrast_values",
    "contrast_saliency",
    "contrast_signed",
    "attention_layers",
    "attention_heads",
    "attention_mean",
    "factor_seed",
    "factor_inputs",
    "factor_input",
    "piece_bytes",
}


def test_a_version_1_file_still_loads(explained, tmp_path):
    """Version 1 (before the contrast, signed integrated gradients, sampling settings and attention
    choices) kept its fields at the top level of the metadata and of the arrays. It loads with those
    parts empty and makes a page; a newer version is refused with a line that says so."""
    e = explained
    v1_fields = [f for f in e.__dataclass_fields__ if f not in V2_FIELDS]
    arrays = {f: getattr(e, f) for f in v1_fields if isinstance(getattr(e, f), np.ndarray)}
    arrays |= {f"saliency.{m}": s for m, s in e.saliency.items()}
    metadata = {"format": "gpt2-engine explain", "version": 1, "saliency_methods": list(e.saliency)}
    metadata |= {f: getattr(e, f) for f in v1_fields if f not in arrays and f not in ("saliency", "pieces")}
    metadata["pieces"] = {str(i): p for i, p in e.pieces.items()}
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", **arrays)
    old = Explanation.load(tmp_path / "v1.npz")
    for field in v1_fields:
        ours, theirs = getattr(old, field), getattr(e, field)
        if field == "saliency":
            assert list(ours) == list(theirs) and all(np.array_equal(ours[m], theirs[m]) for m in ours)
        elif isinstance(theirs, np.ndarray):
            assert np.array_equal(ours, theirs), field
        else:
            assert ours == theirs, field
    N = len(e.token_ids)
    assert old.contrast_saliency == {} and old.generation is None and old.ig_contributions.shape == (0, N)
    assert old.attention_layers == [0, 1, 2, 3] and old.attention_heads == [0, 1, 2, 3] and not old.attention_mean
    assert old.signed("integrated_gradients") is None and old.signed("erasure") is not None
    assert "<!DOCTYPE html>" in old.to_html()
    metadata["version"] = 3
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v3.npz", **arrays)
    with pytest.raises(
        InputError, match="v3.npz: explain format version 3, this engine reads versions 1 and 2: .* newer"
    ):
        Explanation.load(tmp_path / "v3.npz")


def test_load_and_save_errors(explained, tmp_path):
    with pytest.raises(InputError, match="cannot read the file"):
        Explanation.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="not an explain result"):
        Explanation.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not an explain result"):
        Explanation.load(tmp_path / "other.npz")
    with pytest.raises(InputError, match="does not exist"):
        explained.save(tmp_path / "no" / "such" / "dir.npz")
    whole = explained.save(tmp_path / "whole.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="truncated.npz: not an explain result"):
        Explanation.load(tmp_path / "truncated.npz")
    with np.load(tmp_path / "whole.npz") as data:
        np.savez(tmp_path / "partial.npz", **{k: data[k] for k in data.files if k != "0/attention"})
    with pytest.raises(InputError, match="partial.npz: an incomplete explain result"):
        Explanation.load(tmp_path / "partial.npz")


def test_prompt_alone_and_options(tiny_model):
    e = tiny_model.explain(tiny_model.tokenizer.encode("To be, or not"), max_new_tokens=0, methods=["gradient"])
    assert e.generated == 0 and e.finish_reason is None and e.saliency["gradient"].shape == (0, 5)
    assert e.prompt == "To be, or not" and e.ig_steps is None and e.erasure_drops.shape == (0, 5)
    assert e.contrast_ids.shape == (0, 2) and e.generation is None
    with pytest.raises(InputError, match="unknown saliency method 'shap'"):
        tiny_model.explain("To be", max_new_tokens=1, methods=["shap"])
    with pytest.raises(InputError, match="max_new_tokens must be an integer >= 0, got -1"):
        tiny_model.explain("To be", max_new_tokens=-1)
    with pytest.raises(InputError, match="the prompt is empty"):
        tiny_model.explain("", max_new_tokens=1)
    with pytest.raises(InputError, match="would pass the context of 256 tokens"):
        tiny_model.explain("To be", max_new_tokens=300)


def test_prompt_handling_is_generations(tiny_model):
    """explain reads its prompt as generate does: with bos=True the analysed sequence starts with
    <|endoftext|>, as the generator saw it; several sequences per prompt, non-integer ids and text
    that is not valid are refused."""
    prompt_ids = tiny_model.tokenizer.encode("To be")
    e = tiny_model.explain("To be", max_new_tokens=2, methods=[], factors=2, iterations=5, bos=True)
    generated = tiny_model.generate("To be", max_new_tokens=2, bos=True)
    assert e.token_ids.tolist() == [tiny_model.config.eos_token_id] + prompt_ids + generated.token_ids
    assert e.prompt_length == len(prompt_ids) + 1 and e.tokens[0] == "<|endoftext|>"
    alone = tiny_model.explain(prompt_ids, max_new_tokens=0, methods=[], factors=2, iterations=5, bos=True)
    assert alone.token_ids.tolist() == [tiny_model.config.eos_token_id] + prompt_ids
    assert alone.generation is None and not alone.continuation_given
    with pytest.raises(InputError, match="explain makes one sequence per prompt"):
        tiny_model.explain("To be", max_new_tokens=2, num_return_sequences=2, temperature=1.0)
    with pytest.raises(InputError, match="explain makes one sequence per prompt"):
        tiny_model.explain("To be", max_new_tokens=2, num_beams=2)
    for max_new_tokens in (0, 1):
        with pytest.raises(InputError, match="the prompt must be a string, a list of strings, token ids"):
            tiny_model.explain([1.7, 2.2], max_new_tokens=max_new_tokens)
    with pytest.raises(InputError, match="token id 50300 is out of range"):
        tiny_model.explain([1, 50300], max_new_tokens=0)
    with pytest.raises(
        InputError, match="the prompt is not valid text: it holds the lone surrogate U[+]DCFF at offset 3"
    ):
        tiny_model.explain("To \udcff", max_new_tokens=1)


def test_seed_is_the_sampling_seed_as_in_generate(tiny_model):
    """seed (and temperature, top_k, ...) go to generation and mean what they mean in generate: the
    same seed gives the same sample, and the result records the settings. The factorisation's seed
    is factor_seed."""
    quick = dict(methods=[], factors=3, iterations=10, alternatives=0)
    a = tiny_model.explain("ROMEO:", max_new_tokens=6, temperature=0.9, top_k=40, seed=1, **quick)
    b = tiny_model.explain("ROMEO:", max_new_tokens=6, temperature=0.9, top_k=40, seed=1, factor_seed=7, **quick)
    sample = tiny_model.generate("ROMEO:", max_new_tokens=6, temperature=0.9, top_k=40, seed=1)
    assert a.token_ids.tolist() == b.token_ids.tolist() == tiny_model.tokenizer.encode("ROMEO:") + sample.token_ids
    assert (a.generation["temperature"], a.generation["top_k"], a.generation["seed"]) == (0.9, 40, 1)
    assert a.generation["max_new_tokens"] == 6 and a.finish_reason == sample.finish_reason
    assert (a.factor_seed, b.factor_seed) == (0, 7)
    assert not np.array_equal(a.factor_activations, b.factor_activations)  # another start, other factors
    samples = {
        tuple(tiny_model.explain("ROMEO:", max_new_tokens=6, temperature=0.9, seed=s, **quick).token_ids)
        for s in (1, 2, 3)
    }
    assert len(samples) > 1  # the seed chooses the sample
    greedy = tiny_model.explain("ROMEO:", max_new_tokens=3, **quick)
    assert greedy.generation["temperature"] == 0.0 and greedy.generation["seed"] is None  # none asked, none used
    # A missing seed when sampling is drawn once and recorded: the sample can be made again.
    drawn = tiny_model.explain("ROMEO:", max_new_tokens=4, temperature=1.0, **quick)
    again = tiny_model.generate("ROMEO:", max_new_tokens=4, temperature=1.0, seed=drawn.generation["seed"])
    assert drawn.token_ids.tolist()[drawn.prompt_length :] == again.token_ids
    for bad, message in [
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(factor_seed=-1), "factor_seed must be an integer >= 0, got -1"),
        (dict(temperature=-1), "temperature must be a number >= 0"),
        (dict(colour="blue"), "unknown generation option 'colour'"),
    ]:
        with pytest.raises(InputError, match=message):
            tiny_model.explain("ROMEO:", max_new_tokens=2, **bad)


def test_continuation_is_analysed_as_if_generated(tiny_model):
    """Teacher forcing: the given text's tokens follow the prompt's, and every analysis is the one
    a generation of those tokens would get."""
    prompt, text = "ROMEO: What light", " through yonder window breaks?"
    e = tiny_model.explain(prompt, continuation=text, steps=20, alternatives=1, factors=3, iterations=10)
    ids, new = tiny_model.tokenizer.encode(prompt), tiny_model.tokenizer.encode(text)
    P = len(ids)
    assert e.token_ids.tolist() == ids + new and e.prompt_length == P and e.generated == len(new)
    assert e.text == prompt + text and e.continuation_given and e.generation is None and e.finish_reason is None
    assert "given (" in e.summary() and "teacher forcing" in e.summary()
    g = e.generated - 1
    single = attribute_all(tiny_model, e.token_ids, int(e.token_ids[P + g]), P + g - 1, METHODS, "logprob", 20)
    for method in METHODS:
        np.testing.assert_array_equal(e.saliency[method][g], single[method].scores)
    by_ids = tiny_model.explain(ids, continuation=new, methods=[], factors=3, iterations=10)
    assert by_ids.token_ids.tolist() == e.token_ids.tolist()
    for bad, message in [
        (
            dict(continuation=text, temperature=0.5),
            "continuation= gives the new tokens, so nothing is generated: drop temperature",
        ),
        (dict(continuation=text, max_new_tokens=4), "drop max_new_tokens"),
        (dict(continuation=""), "the continuation is empty"),
        (dict(continuation=[1, 10**6]), "the continuation: token id 1000000 is out of range"),
        (dict(continuation=" x" * 300), "pass the model's context of 256 tokens"),
        (dict(continuation=3.5), "the continuation must be a string or token ids"),
        (dict(continuation="\udcff"), "the continuation is not valid text"),
    ]:
        with pytest.raises(InputError, match=message):
            tiny_model.explain(prompt, **bad)


def test_several_prompts_share_one_factorisation(tiny_model, tmp_path):
    """explain over a list: one result per prompt, every analysis its own but the neuron factors,
    fitted once over the tokens of all of them (so a factor is one group of neurons everywhere)."""
    prompts = ["ROMEO: What light", "JULIET: O Romeo, Romeo", "KING: Now"]
    results = tiny_model.explain(prompts, max_new_tokens=3, methods=["gradient"], factors=4, iterations=50)
    assert isinstance(results, Explanations) and len(results) == 3
    for prompt, r in zip(prompts, results):
        alone = tiny_model.explain(prompt, max_new_tokens=3, methods=["gradient"], factors=4, iterations=50)
        assert r.token_ids.tolist() == alone.token_ids.tolist() and r.prompt == prompt
        np.testing.assert_array_equal(r.saliency["gradient"], alone.saliency["gradient"])
        np.testing.assert_array_equal(r.lens_top_ids, alone.lens_top_ids)
        assert r.factor_inputs == 3
    assert [r.factor_input for r in results] == [0, 1, 2]
    caches = [tiny_model.run_with_cache(r.token_ids)[1] for r in results]
    for s, layers in enumerate(results[0].factor_layers):
        stacked = np.concatenate([np.stack([cache["post", i] for i in layers]) for cache in caches], axis=1)
        shared = factorise(stacked, layers, 4, iterations=50)
        joined = np.concatenate([r.factor_activations[s] for r in results], axis=1)  # [F, tokens of all]
        np.testing.assert_allclose(joined, shared.activations, rtol=1e-3, atol=1e-4)
        for r in results:
            np.testing.assert_array_equal(r.factor_top_neurons[s], results[0].factor_top_neurons[s])
    path = results.save(tmp_path / "three.npz")
    loaded = Explanations.load(path)
    assert len(loaded) == 3
    for ours, theirs in zip(results, loaded):
        assert_same(ours, theirs)
    with pytest.raises(InputError, match=r"holds 3 explanations .* Explanations.load"):
        Explanation.load(path)
    given = tiny_model.explain(prompts[:2], continuation=[" light", " O"], methods=[], factors=2, iterations=5)
    assert [r.generated for r in given] == [1, 1] and all(r.continuation_given for r in given)
    with pytest.raises(InputError, match="with 2 prompts, continuation must be a list of 2"):
        tiny_model.explain(prompts[:2], continuation=" light", methods=[])


def test_attention_choices(tiny_model):
    """attention="all" (the default), "mean" (each layer's mean over the heads) or "none", of the
    chosen layers and heads; the choice is checked before any work."""
    quick = dict(max_new_tokens=3, methods=[], factors=2, iterations=5, alternatives=0)
    full = tiny_model.explain("ROMEO:", **quick)
    N = len(full.token_ids)
    assert full.attention.shape == (4, 4, N, N) and full.attention_layers == [0, 1, 2, 3] and not full.attention_mean
    some = tiny_model.explain("ROMEO:", attention_layers=[3, 1], attention_heads=[0, 2], **quick)
    assert some.attention_layers == [3, 1] and some.attention_heads == [0, 2]
    np.testing.assert_array_equal(some.attention, full.attention[np.ix_([3, 1], [0, 2])])
    mean = tiny_model.explain("ROMEO:", attention="mean", **quick)
    assert mean.attention.shape == (4, 1, N, N) and mean.attention_mean
    np.testing.assert_allclose(mean.attention[:, 0], full.attention.astype(np.float32).mean(1), atol=1e-3)
    none = tiny_model.explain("ROMEO:", attention="none", **quick)
    assert none.attention.shape == (0, 0, N, N) and none.attention_layers == []
    for bad, message in [
        (dict(attention="some"), "attention must be one of all, mean, none"),
        (dict(attention_layers=[4]), "attention_layers: layer 4 is out of range: the model has layers 0 to 3"),
        (dict(attention_heads=[1, 1]), "attention_heads must be distinct"),
        (dict(attention_layers=[]), "attention_layers must name at least one layer"),
        (dict(attention_heads="0"), "attention_heads must be a list of head numbers"),
    ]:
        with pytest.raises(InputError, match=message):
            tiny_model.explain("ROMEO:", **quick, **bad)


def test_pieces_that_are_parts_of_a_character_keep_their_bytes(tiny_model):
    """An emoji the tokenizer splits into pieces: each piece's text is U+FFFD, its bytes are kept
    (for the page and the plots to show), and together they spell the emoji."""
    e = tiny_model.explain("A parrot 🦜", max_new_tokens=1, methods=[], factors=2, iterations=5, alternatives=0)
    ids = e.token_ids.tolist()
    parts = [i for i in ids[: e.prompt_length] if i in e.piece_bytes]
    assert len(parts) == 3
    assert bytes.fromhex(" ".join(e.piece_bytes[i] for i in parts)).decode("utf-8").strip() == "🦜"
    assert all(set(e.pieces[i]) == {"\ufffd"} for i in parts[1:])
    assert not {i for i in ids if "\ufffd" not in e.pieces[i]} & set(e.piece_bytes)


def test_options_are_checked_before_generating(tiny_model, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran before the options were checked")

    monkeypatch.setattr(type(tiny_model), "run_with_cache", no_generation)
    monkeypatch.setattr("engine.generation.token_search.prefill", no_generation)
    for top_k in (0, 50258, 2.5):
        with pytest.raises(InputError, match="lens_top_k must be an integer"):
            tiny_model.explain("To be", max_new_tokens=2, lens_top_k=top_k)
    for alternatives in (-1, 21):
        with pytest.raises(InputError, match="alternatives must be an integer from 0 to 20"):
            tiny_model.explain("To be", max_new_tokens=2, alternatives=alternatives)
    with pytest.raises(InputError, match="top_k must be an integer >= 1"):  # the sampling top-k, as in generate
        tiny_model.explain("To be", max_new_tokens=2, temperature=1.0, top_k=0)
    with pytest.raises(InputError, match="attention_layers: layer 9"):
        tiny_model.explain(["To be", "or not"], max_new_tokens=2, attention_layers=[9])


def test_result_for_20_tokens_on_the_124M_shape_is_small(explained_124M, tmp_path):
    """The result for 20 new tokens on the 124M shape stays under 1 MB, raw and as .npz. No saliency
    is computed here, to save time: its arrays (4 methods x 20 x N float32, erasure's drops, the
    signed integrated gradients, and the contrast with 2 foils: 4 + 2 arrays of 20 x 2 x N) are counted in."""
    e = explained_124M  # conftest: 10 prompt tokens, 20 new ones, methods=[], 20 NMF iterations
    N = len(e.token_ids)
    assert N == 30 and e.attention.shape == (12, 12, N, N) and e.contrast_ids.shape == (20, 2)
    raw = sum(getattr(e, f).nbytes for f in e.__dataclass_fields__ if isinstance(getattr(e, f), np.ndarray))
    raw += (4 + 1 + 1) * 20 * N * 4 + (4 + 2) * 20 * 2 * N * 4
    size = e.save(tmp_path / "big.npz").stat().st_size
    print(f"124M shape, 30 tokens: {raw:,} bytes of arrays, {size:,} bytes as .npz")
    assert raw < 1_000_000 and size < 1_000_000


def test_write_together_writes_all_or_none(tmp_path, monkeypatch):
    """Two files or neither: a failure while writing the second leaves no new first file, an
    existing first file keeps its content, and a failure after the second is in place puts it back."""
    first, second = tmp_path / "r.npz", tmp_path / "r.html"

    def fail(out):
        out.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        write_together([(first, lambda out: out.write(b"result")), (second, fail)])
    assert list(tmp_path.iterdir()) == []
    first.write_bytes(b"old result")
    with pytest.raises(OutputError, match="No space left"):
        write_together([(first, lambda out: out.write(b"result")), (second, fail)])
    assert first.read_bytes() == b"old result" and not second.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]  # no temporaries, no backups left
    second.write_bytes(b"old page")
    real_replace = os.replace

    def replace(source, destination):  # the first file's rename fails, after the second is in place
        if str(destination) == str(first):
            raise OSError(5, "Input/output error")
        return real_replace(source, destination)

    monkeypatch.setattr("engine.base.files.os.replace", replace)
    with pytest.raises(OutputError, match="Input/output"):
        write_together([(first, lambda out: out.write(b"result")), (second, lambda out: out.write(b"page"))])
    monkeypatch.undo()
    assert first.read_bytes() == b"old result" and second.read_bytes() == b"old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.npz"]
    written = write_together([(first, lambda out: out.write(b"1")), (second, lambda out: out.write(b"2"))])
    assert written == [first, second] and (first.read_bytes(), second.read_bytes()) == (b"1", b"2")
    with pytest.raises(InputError, match="the outputs must be different files"):
        write_together([(first, lambda out: None), (tmp_path / "." / "r.npz", lambda out: None)])


# ----------------------------------------------------------------------------------------------
# gpt2 explain (its output and file: tests/test_interpretability_docs.py, on the example of docs/interpretability.md)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "gradient,lime"], "--methods: unknown saliency method 'lime'"),
        (["--steps", "0"], "--steps must be an integer from 1 to 10000, got 0"),
        (["--factors", "0"], "--factors must be an integer >= 1, got 0"),
        (["--lens-top-k", "0"], "--lens-top-k must be an integer >= 1, got 0"),
        (["--lens-top-k", "60000"], "--lens-top-k must be an integer from 1 to 50257, got 60000"),
        (["--top-k", "5"], "--top-k applies to sampling: give --temperature > 0"),
        (["-n", "-2"], "--max-new-tokens must be an integer >= 0, got -2"),
        (["--alternatives", "-1"], "--alternatives must be an integer from 0 to 20, got -1"),
        (
            ["--output", "/nonexistent-dir/r.npz"],
            "--output /nonexistent-dir/r.npz: the directory /nonexistent-dir does not exist",
        ),
        (["-n", "400"], "max_new_tokens=400 would pass the context of 256 tokens"),
        (["--attention-layers", "7"], "attention_layers: layer 7 is out of range"),
        (
            ["--continuation", " x", "--seed", "3"],
            "--continuation gives the new tokens, so nothing is generated: drop --seed",
        ),
        (
            ["--continuation", " x", "--continuation", " y"],
            "give --continuation once per prompt: 1 prompts, 2 continuations",
        ),
    ],
)
def test_cli_errors(tiny_model_dir, args, message):
    assert_user_error(gpt2("explain", "ROMEO:", "--model", tiny_model_dir, *args), message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (["--factor-seed", "-1"], "--factor-seed must be an integer >= 0, got -1"),
        (["--temperature", "-0.5"], "--temperature must be a number >= 0"),
        (["--top-p", "2", "-t", "1"], "--top-p must be in (0, 1]"),
    ],
)
def test_cli_refuses_bad_options_before_loading_the_model(tmp_path, args, message):
    """Issue 17, point 7: a negative --seed used to fail after the whole computation. Every option
    is now checked first: here the model does not even exist, and the option's error is the one given."""
    assert_user_error(gpt2("explain", "ROMEO:", "--model", tmp_path / "no-model", *args), message)


def test_cli_refuses_a_negative_seed_at_once(tiny_model_dir, tmp_path):
    """With a model that loads: a negative --seed used to run generation, saliency, the lens and the
    factors, then end in a traceback from the factorisation; it now fails first, writing nothing."""
    out = tmp_path / "r.npz"
    result = gpt2("explain", "ROMEO:", "--model", tiny_model_dir, "-n", "2", "--seed", "-1", "--output", out)
    assert_user_error(result, "--seed must be an integer >= 0, got -1")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_invalid_utf8_and_writes_neither_file(tiny_model_dir, tmp_path):
    """Issue 17, point 7: a prompt of invalid UTF-8 (which generate refuses) used to be accepted, the
    .npz written, and then the HTML write failed. Now it is refused first, and nothing is written."""
    bad = os.fsdecode(b"ROMEO \xff:")  # argv bytes that are not UTF-8, as a shell passes them
    out, page = tmp_path / "r.npz", tmp_path / "r.html"
    result = gpt2("explain", bad, "--model", tiny_model_dir, "-n", "2", "--output", out, "--html", page)
    assert_user_error(result, "PROMPT: not valid UTF-8 (byte 0xff at offset 6)")
    assert list(tmp_path.iterdir()) == []
    result = gpt2(
        "explain", "ROMEO:", "--continuation", bad, "--model", tiny_model_dir, "--output", out, "--html", page
    )
    assert_user_error(result, "--continuation: not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_cli_samples_as_generate_does_and_writes_both_files(tiny_model_dir, tiny_model, tmp_path):
    out, page = tmp_path / "r.npz", tmp_path / "r.html"
    args = ["-n", "5", "--temperature", "0.8", "--top-p", "0.9", "--seed", "3", "--methods", "gradient"]
    result = gpt2("explain", "ROMEO:", "--model", tiny_model_dir, *args, "--output", out, "--html", page, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and f"wrote {page}" in result.stdout
    e = Explanation.load(out)
    sample = tiny_model.generate("ROMEO:", max_new_tokens=5, temperature=0.8, top_p=0.9, seed=3)
    assert e.token_ids.tolist()[e.prompt_length :] == sample.token_ids
    assert (e.generation["temperature"], e.generation["top_p"], e.generation["seed"]) == (0.8, 0.9, 3)
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_explains_a_given_continuation_and_several_prompts(tiny_model_dir, tmp_path):
    out = tmp_path / "r.npz"
    result = gpt2(
        "explain", "ROMEO:", "JULIET:", "--continuation", " Is the day", "--continuation", " O Romeo",
        "--model", tiny_model_dir, "--methods", "erasure", "--attention", "mean", "--output", out, "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "input 2 of 2" in result.stdout and "given (3 tokens, teacher forcing)" in result.stdout
    results = Explanations.load(out)
    assert [r.prompt for r in results] == ["ROMEO:", "JULIET:"]
    assert [r.text for r in results] == ["ROMEO: Is the day", "JULIET: O Romeo"]
    assert all(r.continuation_given and r.attention_mean and r.factor_inputs == 2 for r in results)
