"""Fidelity of each (side, precision) against float32, on a real trained model and held-out text.

The harness (`benchmarks/run.py`) tokenizes the first `WINDOWS x WINDOW` tokens of the held-out
text with the engine's tokenizer and cuts them into `WINDOWS` windows of `WINDOW` tokens (the tiny
Shakespeare model's whole context, n_positions = 256). Each side, in its own worker process, loads
the same model at its precision and:

1. computes the logits of every position of each window in one call with no cache (position t
   predicts token t + 1, so a window scores its last WINDOW - 1 tokens: 8 x 255 = 2,040 tokens),
   and from them the mean negative log-likelihood of the actual next tokens (perplexity =
   exp(mean NLL)), the mean KL divergence KL(float32 || side) of the next-token distribution over
   the whole vocabulary, and the share of positions whose most likely token is float32's;
2. continues `PROMPTS` fixed prompts (the first `PROMPT_LEN` tokens of each window) greedily for
   `NEW_TOKENS` tokens through its KV cache; the harness compares them with float32's.

The float32 reference is the engine's float32 side, which runs first and writes its log-softmax
(float32 [WINDOWS, WINDOW - 1, V], ~411 MB for GPT-2's vocabulary) to a file that the other sides
read (memory-mapped), so no side's logits cross a pipe. Every other row is compared with it,
float32 peers included (they should be at ~0: it shows the comparison is between precisions, not
between implementations).
"""

from __future__ import annotations

import math

import numpy as np

WINDOWS, WINDOW = 8, 256
PROMPTS, PROMPT_LEN, NEW_TOKENS = 8, 32, 32


def heldout_windows(tokenizer, text: str, windows: int = WINDOWS, window: int = WINDOW) -> np.ndarray:
    """The first windows * window tokens of `text` (no BOS), as int64 [windows, window]."""
    ids = tokenizer.encode(text, allow_special=False)
    if len(ids) < windows * window:
        raise ValueError(
            f"the held-out text has {len(ids)} tokens; {windows} windows of {window} need {windows * window}"
        )
    return np.asarray(ids[: windows * window], dtype=np.int64).reshape(windows, window)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float [T, V] -> float64 [T, V], the log-probabilities."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def new_totals() -> dict:
    return {"nll": 0.0, "kl": 0.0, "top1": 0, "scored": 0, "compared": 0, "reference": None}


def compare_window(totals: dict, reference: dict, w: int, window: np.ndarray, logits: np.ndarray) -> None:
    """Add window `w` to the running totals. window: int64 [T]; logits: float32 [T, V] (position t
    predicts token t + 1; the last position predicts nothing here). reference: {"path": file,
    "write": bool, "windows": count}: the reference side writes its log-probabilities to the file,
    every other side reads them."""
    T = window.shape[0]
    # Log-probabilities in float64, rounded to float32 as the reference's are stored: a side with
    # the reference's logits then has a KL of exactly 0, not float32's rounding noise (~1e-10).
    lp = log_softmax(logits[: T - 1]).astype(np.float32).astype(np.float64)  # [T-1, V]
    targets = window[1:]
    totals["nll"] -= float(lp[np.arange(T - 1), targets].sum())
    totals["scored"] += T - 1
    if totals["reference"] is None:
        shape = (reference["windows"], T - 1, lp.shape[1])
        if reference["write"]:
            totals["reference"] = np.lib.format.open_memmap(reference["path"], mode="w+", dtype=np.float32, shape=shape)
        else:
            totals["reference"] = np.load(reference["path"], mmap_mode="r")
    ref = totals["reference"]
    if reference["write"]:
        ref[w] = lp
        ref.flush()
    ref_lp = ref[w].astype(np.float64)
    kl = (np.exp(ref_lp) * (ref_lp - lp)).sum(axis=-1)  # [T-1]
    totals["kl"] += float(kl.sum())
    totals["top1"] += int((ref_lp.argmax(axis=-1) == lp.argmax(axis=-1)).sum())
    totals["compared"] += T - 1


def totals_summary(totals: dict) -> dict:
    nll = totals["nll"] / totals["scored"]
    return {
        "scored": totals["scored"],
        "mean_nll": nll,
        "perplexity": math.exp(nll),
        "mean_kl": totals["kl"] / totals["compared"],
        "top1_agreement": totals["top1"] / totals["compared"],
    }


def greedy_from(greedy, prompts: np.ndarray, new_tokens: int) -> list:
    """A side's greedy continuations of prompts int64 [B, P]: `greedy(prompts, new_tokens)` -> [B][N]."""
    return [list(map(int, row)) for row in greedy(prompts, new_tokens)]


def greedy_agreement(reference: list, generated: list) -> dict:
    """How far each continuation follows float32's: per prompt, the tokens before the first
    difference; summed over prompts as a share of all tokens, and the prompts that agree throughout."""
    agree = []
    for ref, got in zip(reference, generated):
        n = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), len(ref))
        agree.append(n)
    total = sum(len(r) for r in reference)
    return {
        "prefix_tokens": agree,
        "share": sum(agree) / total,
        "identical": sum(n == len(r) for n, r in zip(agree, reference)),
        "prompts": len(reference),
    }
