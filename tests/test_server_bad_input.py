"""Hostile and malformed requests to a real `gpt2 serve`: each gets its typed 4xx with an OpenAI-style
error body naming the problem, and the server keeps answering everyone else.

One server for the module, on a free loopback port, with a small body limit so that "too large" is
cheap to send. Every request is bounded in time.
"""

import json

import httpx
import pytest
from server_helpers import ServerProcess, post

MAX_BODY = 4096


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    process = ServerProcess(tiny_model_dir, "--max-body-bytes", MAX_BODY, tmp_path=tmp_path_factory.mktemp("server"))
    try:
        yield process
    finally:
        code = process.stop()
    assert code == 0, process.output()


def completion(**fields) -> dict:
    return {"model": "shakespeare-gpt2-tiny", "prompt": "ROMEO:", "max_tokens": 2, "temperature": 0} | fields


# (what is sent: a JSON value, or raw bytes), the status, the error's code or param, words the message has
BAD_REQUESTS = [
    (b'{"prompt": "ROMEO:", "max_tokens": 2', 400, "invalid_json", "not valid JSON"),
    (b"", 400, "invalid_json", "not valid JSON"),
    (b'{"prompt": "\xff\xfe ROMEO"}', 400, "invalid_utf8", "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, 413, "body_too_large", str(MAX_BODY)),
    (b'{"prompt": "' + b"a" * (2 * MAX_BODY) + b'"}', 413, "body_too_large", str(MAX_BODY)),
    (["not", "an", "object"], 400, None, "JSON object"),
    (completion(max_tokens="ten"), 400, "max_tokens", "max_tokens"),
    (completion(max_tokens=10**12), 400, "max_tokens", "max_tokens"),
    (completion(max_tokens=-1), 400, "max_tokens", "max_tokens"),
    (completion(n=-2), 400, "n", "n"),
    (completion(n=0), 400, "n", "n"),
    (completion(temperature="hot"), 400, "temperature", "temperature"),
    (completion(temperature=float("nan")), 400, None, None),  # NaN is not JSON: refused either way
    (completion(top_p=1.5), 400, "top_p", "top_p"),
    (completion(logprobs=50), 400, "logprobs", "logprobs"),
    (completion(stop=["a", "b", "c", "d", "e"]), 400, "stop", "stop"),
    (completion(prompt=[[50257]]), 400, "prompt", "prompt"),
    (completion(prompt=[[-1]]), 400, "prompt", "prompt"),
    (completion(prompt={"text": "ROMEO:"}), 400, "prompt", "prompt"),
    (completion(prompt="ROMEO: " * 400), 400, "prompt", "context"),
    (completion(logit_bias={"not a token": 5}), 400, "logit_bias", "logit_bias"),
    (completion(seed=-5), 400, "seed", "seed"),
    (completion(frobnicate=True), 400, "frobnicate", "unknown field"),
]


def send(server, body) -> httpx.Response:
    if isinstance(body, dict) and any(isinstance(v, float) and v != v for v in body.values()):
        return post(server.url + "/v1/completions", json.dumps(body).encode())  # Python writes NaN
    return post(server.url + "/v1/completions", body)


@pytest.mark.parametrize("body,status,code_or_param,words", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_each_bad_request_gets_its_typed_error(server, body, status, code_or_param, words):
    response = send(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    if code_or_param is not None:
        assert code_or_param in (error["code"], error["param"]), error
    if words is not None:
        assert words in error["message"], error


def test_fifty_bad_requests_in_a_row_leave_the_server_answering(server):
    good = post(server.url + "/v1/completions", completion(max_tokens=4))
    assert good.status_code == 200, good.text
    for i in range(50):
        body, status, _, _ = BAD_REQUESTS[i % len(BAD_REQUESTS)]
        assert send(server, body).status_code == status
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    again = post(server.url + "/v1/completions", completion(max_tokens=4))
    assert again.status_code == 200 and again.json()["choices"][0]["text"] == good.json()["choices"][0]["text"]
    assert server.process.poll() is None
