"""The Python side of the R package gpt2engine: thin calls into the engine's public API.

R reaches these functions through reticulate. Each returns plain Python values (str, int, float,
lists and dicts of them), never NumPy arrays: reticulate 1.28, Debian's, predates NumPy 2 and hands
arrays to R unconverted. Each returns {"value": result} on success and {"error": message, "type":
class name} when the engine refuses the input (a GPT2Error, whose message is one line), so that R
raises an R error with the engine's message whatever reticulate version wraps the call: reticulate's
own wrapping of Python exceptions has changed between versions (message prefix, traceback, class).
Any other exception is a bug and reaches R as reticulate reports it, traceback included.

Only the public API is used: `from engine import GPT2, GPT2Error`, model.generate / score /
tokenizer / explain, model.config.
"""

import functools

from engine import GPT2, GPT2Error


def reported(function):
    """{"value": function(...)}, or {"error": ..., "type": ...} for an engine error (or a file
    that cannot be written, for explain's page)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return {"value": function(*args, **kwargs)}
        except GPT2Error as error:
            return {"error": str(error), "type": type(error).__name__}
        except OSError as error:
            return {"error": f"{error.filename or ''}: {error.strerror or error}".lstrip(": "), "type": "OSError"}

    return wrapper


def whole(value):
    """R gives every number as a float; the engine wants ints for counts, seeds and k."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@reported
def load(name_or_dir):
    """The model, from a directory or a name the engine looks up ("124M" ... "1558M", "gpt2", ...)."""
    return GPT2.from_pretrained(name_or_dir)


@reported
def info(model):
    c = model.config
    return {"n_positions": c.n_positions, "vocab_size": c.vocab_size, "n_layer": c.n_layer,
            "n_head": c.n_head, "n_embd": c.n_embd, "eos_token_id": c.eos_token_id}


@reported
def encode(model, text):
    """Token ids [T] of a text, as a list of ints."""
    return [int(i) for i in model.tokenizer.encode(text)]


@reported
def pieces(model, ids):
    """The text of each token on its own (U+FFFD where a token holds part of a UTF-8 character)."""
    return [model.tokenizer.decode([int(i)]) for i in ids]


@reported
def generate(model, prompt, max_new_tokens, temperature, top_k, top_p, seed, num_return_sequences, bos):
    """The new texts of num_return_sequences samples of one prompt (a list of strings), by model.generate with the
    same arguments; top_k / top_p None mean off, seed None a fresh seed."""
    results = model.generate(
        prompt, max_new_tokens=whole(max_new_tokens), temperature=temperature,
        top_k=None if top_k is None else whole(top_k), top_p=top_p,
        seed=None if seed is None else whole(seed), num_return_sequences=whole(num_return_sequences), bos=bool(bos),
    )
    if not isinstance(results, list):
        results = [results]
    return [r.text for r in results]


def float_list(array):
    """float32 values as Python floats (exactly), NaN kept: R turns NaN into NA."""
    return [float(x) for x in array.tolist()]


@reported
def score(model, text, context, stride, bos):
    """model.score(text, ...) as lists: token ids, their pieces, log-probabilities (NaN where not
    scored), the window that scored each token (-1: none), and the totals."""
    options = {"bos": bool(bos), "progress": False}
    if context is not None:
        options["context"] = whole(context)
    if stride is not None:
        options["stride"] = whole(stride)
    s = model.score(text, **options)
    ids = [int(i) for i in s.token_ids.tolist()]
    return {
        "token_ids": ids,
        "pieces": [model.tokenizer.decode([i]) for i in ids],
        "logprobs": float_list(s.logprobs),
        "window": [int(w) for w in s.window.tolist()],
        "count": int(s.count), "total_nll": float(s.total_nll), "mean_nll": float(s.mean_nll),
        "perplexity": float(s.perplexity), "context": int(s.context), "stride": int(s.stride),
    }


@reported
def perplexity(model, text, context, stride, bos):
    options = {"bos": bool(bos), "progress": False}
    if context is not None:
        options["context"] = whole(context)
    if stride is not None:
        options["stride"] = whole(stride)
    return float(model.perplexity(text, **options))


@reported
def explain(model, prompt, max_new_tokens, path, options):
    """model.explain(prompt, ...), its page saved to path; the tokens and every saliency matrix
    [G, N] as a list of G rows."""
    options = {name: whole(value) for name, value in (options or {}).items()}
    options.setdefault("progress", False)
    result = model.explain(prompt, max_new_tokens=whole(max_new_tokens), **options)
    written = result.save_html(path)
    return {
        "path": str(written),
        "token_ids": [int(i) for i in result.token_ids.tolist()],
        "tokens": list(result.tokens),
        "prompt_length": int(result.prompt_length),
        "finish_reason": result.finish_reason,
        "saliency": {method: [float_list(row) for row in matrix] for method, matrix in result.saliency.items()},
    }

