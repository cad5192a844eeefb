"""Scoring and perplexity: the sliding-window protocol of Hugging Face's perplexity guide, checked
against that guide's loop run on transformers (synthetic checkpoints and the tiny Shakespeare model
on the held-out Tempest text), and the figures of docs/scoring.md against a live computation."""

import math
import re
from itertools import groupby

import numpy as np
import pytest
import torch
from conftest import REPO, shared_path
from reference import hf_model

from engine import GPT2, InputError
from engine.base.config import GPT2Config
from engine.base.numeric import log_softmax
from engine.scoring import sliding_windows

# ----------------------------------------------------------------------------------------------
# The reference: the loop of "Perplexity of fixed-length models" (transformers docs), on transformers


def guide_windows(n_tokens, context, stride):
    """The guide's loop: (begin, end, trg_len) per window; labels before end - trg_len are -100."""
    windows, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + context, n_tokens)
        windows.append((begin, end, end - prev_end))
        prev_end = end
        if end == n_tokens:
            break
    return windows


def guide_labels(ids, begin, end, trg_len):
    labels = np.array(ids[begin:end])
    labels[:-trg_len] = -100
    return labels


def hf_guide_perplexity(model_dir, ids, context, stride, batch_size=4, per_token=True):
    """The guide's loop on transformers. Windows of one shape run as one batch (which changes no
    result: each row is its own sequence). Each batch's loss, a mean over the labels the model
    predicts (those after the first of each row that are not -100), is weighted by their number.
    (The guide's code weights by the number of labels that are not -100 minus one per row, which is
    that number for the first window only: a later window's first label is already -100.)

    Returns (per-token NLL float64 [N], NaN where unscored or without per_token, total NLL from the
    losses, count). A window of one token (stride == context) is skipped: it predicts nothing, and
    its mean loss would be 0/0.
    """
    model = hf_model(model_dir)
    nll = np.full(len(ids), np.nan)
    total, count = 0.0, 0
    windows = [w for w in guide_windows(len(ids), context, stride) if w[1] - w[0] > 1]
    i = 0
    while i < len(windows):
        shape = lambda w: (w[1] - w[0], w[2])  # noqa: E731
        j = i + 1
        while j < len(windows) and j - i < batch_size and shape(windows[j]) == shape(windows[i]):
            j += 1
        batch = windows[i:j]
        input_ids = torch.as_tensor(np.stack([ids[b:e] for b, e, _ in batch]), dtype=torch.int64)
        labels = torch.as_tensor(np.stack([guide_labels(ids, *w) for w in batch]), dtype=torch.int64)
        with torch.no_grad():
            out = model(input_ids, labels=labels)
        predicted = int((labels[:, 1:] != -100).sum())  # the loss's own shift: label t is predicted at t - 1
        total += out.loss.item() * predicted
        count += predicted
        if per_token:
            per_token_nll = torch.nn.functional.cross_entropy(
                out.logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
            )  # [B, L - 1]
            for row, (b, e, _) in enumerate(batch):
                keep = (labels[row, 1:] != -100).numpy()
                nll[b + 1 : e][keep] = per_token_nll[row].numpy()[keep]
        i = j
    return nll, total, count


@pytest.fixture(scope="module")
def synthetic_dir(synthetic):
    return synthetic("scoring", GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64))


@pytest.fixture(scope="module")
def synthetic_model(synthetic_dir):
    return GPT2.from_pretrained(synthetic_dir)


def random_ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, 50257, size=n).tolist()


# ----------------------------------------------------------------------------------------------
# The windows


@pytest.mark.parametrize("n_tokens", [2, 3, 9, 10, 17, 64, 65, 100])
@pytest.mark.parametrize(
    "context, stride", [(2, 1), (2, 2), (4, 1), (4, 2), (4, 3), (4, 4), (8, 5), (64, 32), (64, 64)]
)
def test_windows_score_what_the_guide_scores(n_tokens, context, stride):
    ours = sliding_windows(n_tokens, context, stride)
    guide = guide_windows(n_tokens, context, stride)
    assert [(w.begin, w.end) for w in ours] == [(b, e) for b, e, _ in guide]
    scored_by_guide = [
        {b + 1 + t for t, label in enumerate(guide_labels(list(range(n_tokens)), b, e, trg)[1:]) if label >= 0}
        for b, e, trg in guide
    ]
    assert [set(range(w.first_scored, w.end)) for w in ours] == scored_by_guide
    scored = [t for s in scored_by_guide for t in s]
    assert len(scored) == len(set(scored)), "a token is scored twice"
    if stride < context:
        assert sorted(scored) == list(range(1, n_tokens)), "only token 0 may go unscored"
    else:
        assert len(scored) == n_tokens - len(ours), "each window's first token is unscored"


# ----------------------------------------------------------------------------------------------
# Agreement with transformers


@pytest.mark.parametrize(
    "n_tokens, context, stride, bos, batch_size",
    [
        (50, 64, 32, False, 4),  # shorter than the context: one window
        (200, 64, 32, False, 3),
        (200, 64, 64, False, 2),  # stride == context: the windows do not overlap
        (161, 40, 40, True, 4),  # with BOS, 162 tokens: the last window is one token and scores nothing
        (150, 30, 7, True, 5),
        (120, 64, 1, False, 16),  # one new token per window
    ],
)
def test_matches_the_guide_on_transformers(synthetic_dir, synthetic_model, n_tokens, context, stride, bos, batch_size):
    ids = random_ids(n_tokens, seed=n_tokens + stride)
    s = synthetic_model.score(ids, bos=bos, context=context, stride=stride, batch_size=batch_size)
    reference_ids = ([50256] if bos else []) + ids
    nll, total, count = hf_guide_perplexity(synthetic_dir, reference_ids, context, stride)

    assert s.token_ids.tolist() == reference_ids
    assert s.logprobs.dtype == np.float32 and s.token_ids.dtype == np.int64
    np.testing.assert_array_equal(s.scored, ~np.isnan(nll))
    np.testing.assert_allclose(-s.logprobs[s.scored], nll[s.scored], rtol=1e-4, atol=1e-4)
    assert s.count == count
    assert s.mean_nll == pytest.approx(total / count, rel=1e-4)
    assert s.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    expected_count = len(reference_ids) - (
        1 if stride < context else len(sliding_windows(len(reference_ids), context, stride))
    )
    assert s.count == expected_count


def tempest_ids():
    from engine.state.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer().encode(shared_path("corpora/heldout_tempest.txt").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hf_tempest(tiny_model_dir):
    """The Tempest ids, and transformers' per-token NLL in every window that either stride's guide
    loop runs, computed once: {(begin, end): float64 [end - begin - 1]}, entry t being the NLL of
    token begin + 1 + t given the window's tokens before it. (Every stride-256 window of this text
    is also a stride-128 window, so this halves the reference's work.)"""
    ids = tempest_ids()
    spans = sorted({(b, e) for stride in (128, 256) for b, e, _ in guide_windows(len(ids), 256, stride)})
    model = hf_model(tiny_model_dir)
    window_nll = {}
    for _length, group in groupby(spans, key=lambda span: span[1] - span[0]):
        group = list(group)
        for k in range(0, len(group), 8):
            batch = group[k : k + 8]
            input_ids = torch.as_tensor(np.stack([ids[b:e] for b, e in batch]), dtype=torch.int64)
            with torch.no_grad():
                logprobs = torch.log_softmax(model(input_ids).logits[:, :-1], dim=-1)  # [B, L - 1, V]
                nll = -logprobs.gather(-1, input_ids[:, 1:, None])[..., 0].double().numpy()  # [B, L - 1]
            window_nll |= dict(zip(batch, nll))
    return ids, window_nll


@pytest.mark.parametrize("stride", [128, 256])
def test_tiny_model_on_the_tempest_matches_transformers_and_the_readme(tiny_model, hf_tempest, stride):
    ids, window_nll = hf_tempest
    s = tiny_model.score(ids, context=256, stride=stride, batch_size=8)
    # The guide's sum: in each window, the NLL of the tokens its labels keep.
    total, count = 0.0, 0
    for begin, end, trg_len in guide_windows(len(ids), 256, stride):
        keep = guide_labels(ids, begin, end, trg_len)[1:] != -100
        total += window_nll[(begin, end)][keep].sum()
        count += int(keep.sum())
    assert s.count == count
    assert s.mean_nll == pytest.approx(total / count, rel=1e-4)

    # docs/scoring.md states these figures: they must be what the code computes.
    readme = (REPO / "docs" / "scoring.md").read_text()
    row = re.search(rf"^\| 256 \| {stride} \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|", readme, re.MULTILINE)
    assert row, f"docs/scoring.md has no row for context 256, stride {stride}"
    windows, tokens, mean_nll, perplexity = row.groups()
    assert int(windows.replace(",", "")) == len(s.windows)
    assert int(tokens.replace(",", "")) == s.count
    assert mean_nll == f"{s.mean_nll:.6f}" and perplexity == f"{s.perplexity:.2f}"


# ----------------------------------------------------------------------------------------------
# The API


def test_a_short_text_is_scored_from_one_forward_pass(tiny_model):
    text = "To be, or not to be: that is the question."
    ids = tiny_model.tokenizer.encode(text)
    s = tiny_model.score(text)
    assert s.token_ids.tolist() == ids and len(s.windows) == 1
    expected = log_softmax(tiny_model(ids))[np.arange(len(ids) - 1), ids[1:]]  # [T - 1]
    np.testing.assert_allclose(s.logprobs[1:], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(s.logprobs[0]) and s.window.tolist() == [-1] + [0] * (len(ids) - 1)
    assert s.count == len(ids) - 1
    assert s.total_nll == pytest.approx(-float(np.sum(expected, dtype=np.float64)), rel=1e-6)
    assert tiny_model.perplexity(text) == s.perplexity == math.exp(s.total_nll / s.count)


def test_bos_scores_the_first_token_too(tiny_model):
    ids = tiny_model.tokenizer.encode("ROMEO: What, ho!")
    s = tiny_model.score(ids, bos=True)
    assert s.token_ids.tolist() == [50256] + ids and s.count == len(ids)
    first = log_softmax(tiny_model([50256]))[0, ids[0]]
    assert s.logprobs[1] == pytest.approx(first, abs=1e-5)
    one_token = tiny_model.score("Hello", bos=True)  # one token is enough with BOS
    assert one_token.count == 1


def test_a_text_longer_than_the_context_is_scored_with_the_sliding_window(synthetic_model):
    ids = random_ids(150, seed=3)  # n_positions is 64
    s = synthetic_model.score(ids)
    assert (s.context, s.stride) == (64, 32)  # the defaults: n_positions, and half of it
    assert [(w.begin, w.end) for w in s.windows] == [(0, 64), (32, 96), (64, 128), (96, 150)]
    assert s.count == 149
    same = synthetic_model.score(ids, context=64, stride=32, batch_size=1)
    np.testing.assert_allclose(s.logprobs, same.logprobs, rtol=1e-5, atol=1e-5)  # batching changes nothing


def test_memory_is_one_batch_of_kept_logits(synthetic_model, monkeypatch):
    calls = []
    forward = GPT2.__call__

    def spy(self, ids, *args, **kwargs):
        logits = forward(self, ids, *args, **kwargs)
        calls.append((np.shape(ids), kwargs.get("logits_to_keep"), logits.shape))
        return logits

    monkeypatch.setattr(GPT2, "__call__", spy)
    s = synthetic_model.score(random_ids(300, seed=4), context=64, stride=16, batch_size=5)
    # 16 windows: the first alone (it scores 63 tokens), 14 of 16 new tokens in batches of 5, and
    # the last, [240, 300), which scores the 12 tokens after 288
    assert len(s.windows) == 16
    assert [(shape, keep) for shape, keep, _ in calls] == [
        ((1, 64), 64),
        ((5, 64), 17),
        ((5, 64), 17),
        ((4, 64), 17),
        ((1, 60), 13),
    ]
    assert all(logits == (shape[0], keep, 50257) for shape, keep, logits in calls)


def test_progress_bar(synthetic_model, capsys):
    synthetic_model.score(random_ids(200, seed=5), context=32, stride=16, batch_size=2, progress=True)
    assert "scoring" in capsys.readouterr().err
    synthetic_model.score(random_ids(200, seed=5), context=32, stride=16, batch_size=2, progress=False)
    synthetic_model.score(random_ids(200, seed=5), context=32, stride=16, batch_size=2)  # not a terminal
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "text_or_ids, options, message",
    [
        ("", {}, "the text is 0 tokens long: scoring needs at least 2"),
        ("Hello", {}, "the text is 1 token long"),
        ([464], {}, "or put <|endoftext|> before it"),
        ("", {"bos": True}, "the text with <|endoftext|> before it is 1 token long"),
        ([[464, 318]], {}, "token ids must be a [N] array"),
        ([464, 50257], {}, "token id 50257 is out of range"),
        ([1.5, 2.0], {}, "token ids must be integers"),
        ("abc \udcff", {}, "the text is not valid Unicode"),
        ("Hello world", {"context": 1}, "context must be an integer from 2 to n_positions=64, got 1"),
        ("Hello world", {"context": 65}, "context must be an integer from 2 to n_positions=64, got 65"),
        ("Hello world", {"stride": 0}, "stride must be an integer from 1 to the context (64), got 0"),
        ("Hello world", {"context": 16, "stride": 17}, "stride must be an integer from 1 to the context (16), got 17"),
        ("Hello world", {"stride": 2.0}, "stride must be an integer"),
        ("Hello world", {"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ("Hello world", {"batch_size": True}, "batch_size must be an integer"),
    ],
)
def test_bad_input_is_refused(synthetic_model, text_or_ids, options, message):
    with pytest.raises(InputError) as error:
        synthetic_model.score(text_or_ids, **options)
    assert message in str(error.value)
