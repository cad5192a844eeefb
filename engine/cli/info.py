"""gpt2 info: a model's shape, size and dtype."""

from __future__ import annotations

from ..state.loader import describe_checkpoint
from .common import add_model_argument, json_line, load_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a model's shape, size and dtype")
    add_model_argument(p, positional=True)
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    model = load_model(args.model, args.dtype)
    c = model.config
    files = describe_checkpoint(str(model.source))
    facts = {
        "source": model.source,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "head_dim": c.head_dim,
        "n_ctx": c.n_ctx,
        "vocab_size": c.vocab_size,
        "mlp_width": c.mlp_width,
        "parameters": model.num_parameters(),
        "stored_dtypes": files["dtypes"],
        "dtype": model.dtype,
        "weight_bytes": model.weight_bytes(),
        "compute_dtype": "float32",
        "file_bytes": files["bytes"],
        "files": files["files"],
    }
    if args.json:
        print(json_line(facts, indent=2))
        return 0
    stored = ", ".join(f"{d} ({n} tensors)" for d, n in files["dtypes"].items())
    print(f"model       {model.source}")
    print(
        f"shape       {c.n_layer} layers, {c.n_head} heads x {c.head_dim}, n_embd {c.n_embd}, "
        f"MLP {c.mlp_width}, context {c.n_ctx}, vocab {c.vocab_size}"
    )
    print(
        f"parameters  {facts['parameters']:,} ({facts['parameters'] / 1e6:.1f}M, output layer tied to wte)"
        if c.tie_word_embeddings
        else f"parameters  {facts['parameters']:,}"
    )
    print(
        f"dtype       stored {stored}; matrices kept as {model.dtype} ({model.weight_bytes():,} bytes); computed in float32"
    )
    print(f"file size   {files['bytes']:,} bytes ({files['bytes'] / 2**20:.1f} MiB) in {len(files['files'])} file(s)")
    return 0
