"""`gpt2 serve` through the official `openai` client: a real server process on a loopback port,
serving the tiny model, compared with what the same model gives in this process (`model.generate`,
`model.score`) number for number.

The server runs with an API key, so every call here also proves the key is checked; /health stays
public.
"""

import math

import httpx
import numpy as np
import openai
import pytest
from server_helpers import metric, post, server_sent_events, start_server

KEY = "test-key-0123"
NAME = "tiny"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    yield from start_server(tiny_model_dir, tmp_path_factory, "--api-key", KEY, "--model-name", NAME)


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def model(tiny_model, one_thread):
    return tiny_model


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_a_plain_completion_is_what_generate_gives(client, model):
    expected = model.generate("ROMEO:", max_new_tokens=20)
    got = client.completions.create(model=NAME, prompt="ROMEO:", max_tokens=20, temperature=0)
    assert got.object == "text_completion" and got.model == NAME and got.id.startswith("cmpl-")
    [choice] = got.choices
    assert (choice.index, choice.text, choice.logprobs) == (0, expected.text, None)
    assert choice.finish_reason == {"length": "length", "eos": "stop", "stop": "stop"}[expected.finish_reason]
    prompt_tokens = len(model.tokenizer.encode("ROMEO:"))
    assert got.usage.prompt_tokens == prompt_tokens
    assert got.usage.completion_tokens == len(expected.token_ids)
    assert got.usage.total_tokens == prompt_tokens + len(expected.token_ids)


def test_a_stream_sends_the_same_text_in_pieces_then_done(client, server, model):
    expected = model.generate("JULIET:", max_new_tokens=25)
    stream = client.completions.create(
        model=NAME, prompt="JULIET:", max_tokens=25, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    pieces = [c.choices[0].text for c in chunks if c.choices]
    assert len(pieces) > 5 and "".join(pieces) == expected.text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 25  # the usage chunk
    # On the wire: server-sent events, each `data: {json}`, the last `data: [DONE]`.
    body = {"model": NAME, "prompt": "JULIET:", "max_tokens": 5, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = server_sent_events(response)
    assert events[-1] == "[DONE]" and all(isinstance(e, dict) for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == model.generate("JULIET:", max_new_tokens=5).text


def test_a_stream_never_splits_a_character(client, model):
    """Only two tokens allowed: the first three bytes of U+1F600 and its last byte. Wherever they
    meet in that order they make the character; the pieces must never carry half of it (as U+FFFD)."""
    bias = {"47249": 100, "222": 100}
    assert model.tokenizer.token_bytes([47249, 222]) == [b"\xf0\x9f\x98", b"\x80"]
    options = dict(model=NAME, prompt="ROMEO:", max_tokens=40, temperature=1.0, seed=11, logit_bias=bias)
    whole = client.completions.create(**options).choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(**options, stream=True)]
    expected = model.generate("ROMEO:", max_new_tokens=40, temperature=1.0, seed=11, logit_bias={47249: 100, 222: 100})
    assert whole == expected.text == model.tokenizer.decode(expected.token_ids)
    assert "\U0001f600" in whole
    assert "".join(pieces) == whole


def test_n_samples_are_generates_samples(client, model):
    expected = model.generate("KING:", max_new_tokens=15, temperature=0.9, seed=42, num_return_sequences=2)
    got = client.completions.create(model=NAME, prompt="KING:", max_tokens=15, temperature=0.9, seed=42, n=2)
    assert [c.index for c in got.choices] == [0, 1]
    assert [c.text for c in got.choices] == [r.text for r in expected]
    assert expected[0].text != expected[1].text


def test_the_same_seed_gives_the_same_text(client):
    options = dict(model=NAME, prompt="First Citizen:", max_tokens=20, temperature=1.0, top_p=0.9)
    first = client.completions.create(**options, seed=7).choices[0].text
    assert client.completions.create(**options, seed=7).choices[0].text == first
    others = {client.completions.create(**options, seed=s).choices[0].text for s in (8, 9)}
    assert others != {first}


def test_logprobs_of_the_new_tokens(client, model):
    expected = model.generate("ROMEO:", max_new_tokens=12)
    got = client.completions.create(model=NAME, prompt="ROMEO:", max_tokens=12, temperature=0, logprobs=3)
    lp = got.choices[0].logprobs
    ids = expected.token_ids
    assert lp.tokens == [model.tokenizer.decode([i]) for i in ids]
    assert lp.token_logprobs == [float(v) for v in expected.logprobs]
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and top[token] == value  # greedy: the chosen token is the most likely
        assert value == max(top.values()) and list(top.values()) == sorted(top.values(), reverse=True)
    prompt_chars = len("ROMEO:")
    assert lp.text_offset == [prompt_chars + len(model.tokenizer.decode(ids[:i])) for i in range(len(ids))]


@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_gives_the_prompts_logprobs_as_model_score_does(client, model, max_tokens):
    prompt = "First Citizen:\nBefore we proceed any further, hear me speak."
    ids = model.tokenizer.encode(prompt)
    scores = model.score(ids)
    got = client.completions.create(
        model=NAME, prompt=prompt, max_tokens=max_tokens, temperature=0, echo=True, logprobs=2
    )
    choice = got.choices[0]
    lp = choice.logprobs
    assert lp.tokens[: len(ids)] == [model.tokenizer.decode([i]) for i in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.token_logprobs[1 : len(ids)] == [float(v) for v in scores.logprobs[1:]]  # the same numbers
    assert lp.text_offset[: len(ids)] == [len(model.tokenizer.decode(ids[:i])) for i in range(len(ids))]
    for t in range(1, len(ids)):
        top = lp.top_logprobs[t]
        assert lp.tokens[t] in top and top[lp.tokens[t]] == lp.token_logprobs[t]
        assert 2 <= len(top) <= 3
    assert len(lp.tokens) == len(ids) + max_tokens
    assert got.usage.completion_tokens == max_tokens
    if max_tokens == 0:
        assert choice.text == prompt and choice.finish_reason == "length"
    else:
        expected = model.generate(ids, max_new_tokens=1)
        assert choice.text == prompt + expected.text
        assert lp.token_logprobs[-1] == float(expected.logprobs[0])


def test_a_batch_of_token_id_prompts_as_lm_evaluation_harness_sends_it(server, model):
    """lm-evaluation-harness's `local-completions` loglikelihood: token-id prompts (context +
    continuation), echo, logprobs 1, max_tokens 1, temperature 0; it reads each choice (sorted by
    index) from the context's length to the last token, and whether each token was the greedy one."""
    encode = model.tokenizer.encode
    pairs = [("ROMEO: O, she doth teach", " the torches to burn bright"), ("KING:", " Go, and")]
    prompts = [encode(c) + encode(x) for c, x in pairs]
    response = post(
        server.url + "/v1/completions",
        {
            "model": NAME,
            "prompt": prompts,
            "temperature": 0,
            "max_tokens": 1,
            "logprobs": 1,
            "seed": 1234,
            "echo": True,
        },
        headers=AUTH,
    ).json()
    choices = sorted(response["choices"], key=lambda c: c["index"])
    assert [c["index"] for c in choices] == [0, 1]
    for (context, _), ids, choice in zip(pairs, prompts, choices):
        ctxlen = len(encode(context))
        token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        scores = model.score(ids)
        assert token_logprobs == [float(v) for v in scores.logprobs[ctxlen:]]
        assert math.isclose(sum(token_logprobs), float(np.sum(scores.logprobs[ctxlen:], dtype=np.float64)))
        logits = model(ids)  # [T, V]
        greedy = all(int(np.argmax(logits[t - 1])) == ids[t] for t in range(ctxlen, len(ids)))
        assert all(tok == max(top.values()) for tok, top in zip(token_logprobs, top_logprobs)) == greedy


def test_a_stop_string_ends_the_text_and_never_leaks_into_the_stream(client, model):
    plain = model.generate("ROMEO:", max_new_tokens=20)
    # A stop string across a token boundary: the end of token 3 and the start of token 4.
    t3, t4 = (model.tokenizer.decode([i]) for i in plain.token_ids[3:5])
    stop = t3[-2:] + t4[:2]
    cut = plain.text[: plain.text.index(stop)]
    options = dict(model=NAME, prompt="ROMEO:", max_tokens=20, temperature=0, stop=[stop, "never appears"])
    got = client.completions.create(**options).choices[0]
    assert (got.text, got.finish_reason) == (cut, "stop")
    pieces = [c.choices[0].text for c in client.completions.create(**options, stream=True)]
    assert "".join(pieces) == cut  # nothing of the stop string was sent, not even its start


def test_the_penalties_and_logit_bias_are_the_engines(client, model):
    options = dict(max_new_tokens=20, presence_penalty=0.7, frequency_penalty=1.1, logit_bias={198: -100.0})
    expected = model.generate("ROMEO:", **options)
    got = client.completions.create(
        model=NAME,
        prompt="ROMEO:",
        max_tokens=20,
        temperature=0,
        presence_penalty=0.7,
        frequency_penalty=1.1,
        logit_bias={"198": -100},
    )
    assert got.choices[0].text == expected.text and "\n" not in expected.text


def test_the_engines_extras_and_beams(client, model):
    expected = model.generate("ROMEO:", max_new_tokens=10, temperature=0.8, top_k=5, seed=3, repetition_penalty=1.2)
    got = client.completions.create(
        model=NAME,
        prompt="ROMEO:",
        max_tokens=10,
        temperature=0.8,
        seed=3,
        extra_body={"top_k": 5, "repetition_penalty": 1.2},
    )
    assert got.choices[0].text == expected.text
    beams = model.generate("ROMEO:", max_new_tokens=8, num_beams=3, num_return_sequences=2)
    got = client.completions.create(
        model=NAME, prompt="ROMEO:", max_tokens=8, n=2, temperature=0, extra_body={"num_beams": 3}
    )
    assert [c.text for c in got.choices] == [r.text for r in beams]


def test_errors_are_the_clients_typed_exceptions(client, server, model):
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=NAME, prompt="ROMEO:", max_tokens=10_000)
    n_prompt = len(model.tokenizer.encode("ROMEO:"))
    assert f"at most {256 - n_prompt} new tokens fit" in error.value.message
    assert error.value.body["param"] == "max_tokens" and error.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=NAME, prompt="ROMEO:", temperature=3)
    assert error.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="ROMEO:")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model=NAME, prompt="ROMEO:")
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # public


def test_models_tokenize_and_detokenize(client, server, model):
    [card] = client.models.list().data
    assert card.id == NAME and card.object == "model"
    ids = model.tokenizer.encode("O Romeo, Romeo!")
    tokens = post(server.url + "/tokenize", {"prompt": "O Romeo, Romeo!", "add_special_tokens": False}, AUTH).json()
    assert tokens == {"tokens": ids, "count": len(ids), "max_model_len": 256}
    text = post(server.url + "/detokenize", {"tokens": ids}, AUTH).json()
    assert text == {"prompt": "O Romeo, Romeo!"}
    info = httpx.get(server.url + "/tokenizer_info", headers=AUTH, timeout=10).json()
    assert info["eos_token"] == "<|endoftext|>" and info["model_max_length"] == 256


def test_metrics_count_requests_and_tokens(client, server):
    before = {
        name: metric(server.url, name, AUTH) for name in ("gpt2_prompt_tokens_total", "gpt2_generation_tokens_total")
    }
    client.completions.create(model=NAME, prompt="ROMEO:", max_tokens=7, temperature=0, extra_body={"ignore_eos": True})
    assert metric(server.url, "gpt2_generation_tokens_total", AUTH) == before["gpt2_generation_tokens_total"] + 7
    assert metric(server.url, "gpt2_prompt_tokens_total", AUTH) > before["gpt2_prompt_tokens_total"]
    text = httpx.get(server.url + "/metrics", headers=AUTH, timeout=10).text
    assert 'gpt2_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert "gpt2_time_per_output_token_seconds_count" in text
    assert metric(server.url, "gpt2_queue_length", AUTH) == 0
    assert metric(server.url, "gpt2_batch_size", AUTH) == 0


def test_lm_evaluation_harness_scores_and_generates_through_the_server(server, model):
    """lm-evaluation-harness's own `local-completions` model, unchanged: it finds /tokenizer_info and
    /tokenize and tokenizes through the server, scores (context, continuation) pairs with echo, and
    generates until a stop string."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    lm = LocalCompletionsAPI(
        base_url=server.url + "/v1/completions",
        model=NAME,
        tokenizer_backend="auto",
        auth_token=KEY,
        header=AUTH,
        max_length=256,
        batch_size=2,
        max_retries=1,
        timeout=60,
    )
    assert lm.tokenizer_backend == "remote"
    pairs = [("ROMEO: O, she doth teach", " the torches to burn bright"), ("KING:", " Go, and"), ("JULIET:", " O")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    results = lm.loglikelihood(requests, disable_tqdm=True)
    encode = model.tokenizer.encode
    for (context, continuation), (logprob, greedy) in zip(pairs, results):
        ids = encode(context) + encode(continuation)
        expected = model.score(ids).logprobs[len(encode(context)) :]
        assert math.isclose(logprob, float(np.sum(expected, dtype=np.float64)), rel_tol=1e-12)
        logits = model(ids)
        assert greedy == all(int(np.argmax(logits[t - 1])) == ids[t] for t in range(len(encode(context)), len(ids)))
    until = [Instance("generate_until", {}, ("ROMEO:", {"until": ["King"], "max_gen_toks": 30, "temperature": 0}), 0)]
    [text] = lm.generate_until(until, disable_tqdm=True)
    assert text == model.generate("ROMEO:", max_new_tokens=30, stop=["King"]).text
