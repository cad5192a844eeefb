"""A GPT-2 checkpoint in Hugging Face layout -> a GGUF file that llama.cpp loads, at F32, F16 or Q8_0.

    python -m benchmarks.gguf_export MODEL_DIR OUT.gguf --precision f32|f16|q8_0

Written with the `gguf` package's writer (pip install gguf; the `bench` extra), following what
llama.cpp's own converter (`convert_hf_to_gguf.py`, its GPT-2 class) writes, so that the file is
the one a llama.cpp user would make:

- architecture "gpt2"; hyper-parameters `gpt2.context_length` (n_positions), `embedding_length`,
  `feed_forward_length`, `block_count`, `attention.head_count`, `attention.layer_norm_epsilon`.
- tensors renamed (`TENSOR_NAMES` below) and the Conv1D matrices transposed from [in, out] to
  [out, in] (numpy order; GGUF lists dimensions the other way round, so llama.cpp sees {in, out}).
  No `output.weight`: llama.cpp ties the output layer to `token_embd.weight` when it is absent.
- precision: the 2-D matrices (token_embd and the four per block) in the chosen type; vectors
  (biases, LayerNorm) and `position_embd` stay F32, as the converter keeps them. Q8_0 is
  quantized by `gguf.quants.quantize` (bit-exact with ggml's reference `quantize_row_q8_0`):
  blocks of 32 weights along the input dimension, an F16 scale max|w|/127 and 32 int8s, 34 bytes.
- tokenizer: GPT-2's byte-level BPE in Hugging Face's spelling (`tokenizer.ggml.model` "gpt2",
  `pre` "gpt-2"), the tokens and merges derived from the engine's own tokenizer
  (`gpt2_vocabulary`), `<|endoftext|>` as BOS, EOS and UNK. The benchmark feeds token ids and never
  asks llama.cpp to tokenize, but the loader needs a vocabulary of the embedding's size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRECISIONS = ("f32", "f16", "q8_0")

# Checkpoint name (Hugging Face, no "transformer." prefix) -> llama.cpp name; {i} is the block.
TENSOR_NAMES = {
    "wte.weight": "token_embd.weight",
    "wpe.weight": "position_embd.weight",
    "ln_f.weight": "output_norm.weight",
    "ln_f.bias": "output_norm.bias",
    "h.{i}.ln_1.weight": "blk.{i}.attn_norm.weight",
    "h.{i}.ln_1.bias": "blk.{i}.attn_norm.bias",
    "h.{i}.attn.c_attn.weight": "blk.{i}.attn_qkv.weight",
    "h.{i}.attn.c_attn.bias": "blk.{i}.attn_qkv.bias",
    "h.{i}.attn.c_proj.weight": "blk.{i}.attn_output.weight",
    "h.{i}.attn.c_proj.bias": "blk.{i}.attn_output.bias",
    "h.{i}.ln_2.weight": "blk.{i}.ffn_norm.weight",
    "h.{i}.ln_2.bias": "blk.{i}.ffn_norm.bias",
    "h.{i}.mlp.c_fc.weight": "blk.{i}.ffn_up.weight",
    "h.{i}.mlp.c_fc.bias": "blk.{i}.ffn_up.bias",
    "h.{i}.mlp.c_proj.weight": "blk.{i}.ffn_down.weight",
    "h.{i}.mlp.c_proj.bias": "blk.{i}.ffn_down.bias",
}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # stored [in, out]
KEPT_F32 = ("position_embd.weight",)  # 2-D, but the converter keeps it F32 whatever the precision


def gguf_name(name: str) -> str:
    """Checkpoint name -> llama.cpp tensor name ('h.3.mlp.c_fc.weight' -> 'blk.3.ffn_up.weight')."""
    parts = name.split(".")
    if parts[0] == "h" and len(parts) > 2 and parts[1].isdigit():
        template = TENSOR_NAMES.get("h.{i}." + ".".join(parts[2:]))
        if template is not None:
            return template.format(i=int(parts[1]))
    elif name in TENSOR_NAMES:
        return TENSOR_NAMES[name]
    raise KeyError(f"no llama.cpp name for checkpoint tensor {name!r}")


def tensor_precision(gguf_tensor_name: str, shape: tuple[int, ...], precision: str) -> str:
    """The type llama.cpp's converter gives a tensor: `precision` for matrices, f32 for the rest."""
    if len(shape) < 2 or gguf_tensor_name in KEPT_F32 or not gguf_tensor_name.endswith(".weight"):
        return "f32"
    return precision


def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (Hugging Face's `bytes_to_unicode`):
    printable Latin-1 bytes other than space stand for themselves; the other 68 bytes, in byte
    order, become U+0100, U+0101, ..."""
    printable = [b for b in range(256) if chr(b).isprintable() and b != ord(" ")]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}


def recover_merges(token_bytes: list[bytes]) -> list[tuple[int, int]]:
    """The BPE merges, as (left id, right id) in merge order, from the tokens in rank order.

    A byte-level BPE vocabulary lists every token after the two it is merged from, and a token's
    merge is what BPE does to its bytes when only lower ranks may be used: merging the best-ranked
    adjacent pair again and again ends at exactly two pieces. Single bytes have no merge.
    """
    rank = {t: i for i, t in enumerate(token_bytes)}
    merges = []
    for i, token in enumerate(token_bytes):
        if len(token) < 2:
            continue
        pieces = [bytes([b]) for b in token]
        while len(pieces) > 2:
            best, at = i, -1  # only ranks below the token's own may merge
            for j in range(len(pieces) - 1):
                r = rank.get(pieces[j] + pieces[j + 1], i)
                if r < best:
                    best, at = r, j
            if at < 0:
                break
            pieces[at : at + 2] = [pieces[at] + pieces[at + 1]]
        if len(pieces) != 2:
            raise ValueError(f"token {i} ({token!r}) is not one merge of two lower-ranked tokens")
        merges.append((rank[pieces[0]], rank[pieces[1]]))
    return merges


def gpt2_vocabulary(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """The engine's tokenizer in GGUF's terms: token strings in Hugging Face's byte-level spelling
    (id order), token types (1 normal, 3 control for the special tokens) and merges ("left right")."""
    n_regular = tokenizer.eot_token  # GPT-2: the 50,256 BPE tokens, then <|endoftext|>
    pieces = tokenizer.token_bytes(range(n_regular))
    char = byte_to_char()
    tokens = ["".join(char[b] for b in piece) for piece in pieces]
    types = [1] * n_regular
    for i in range(n_regular, tokenizer.n_vocab):
        tokens.append(tokenizer.decode([i]))
        types.append(3)
    merges = [f"{tokens[a]} {tokens[b]}" for a, b in recover_merges(pieces)]
    return tokens, types, merges


def write_gguf(model_dir: str | Path, out: str | Path, precision: str = "f32") -> Path:
    """Write `model_dir`'s float checkpoint as a llama.cpp GGUF at `precision` (f32, f16, q8_0)."""
    import gguf

    from engine.base.config import GPT2Config
    from engine.state.loader import load_state_dict
    from engine.state.tokenizer import load_tokenizer
    from engine.state.weights import parameter_shapes

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    model_dir, out = Path(model_dir), Path(out)
    config = GPT2Config.from_json(model_dir / "config.json")
    if not config.tie_word_embeddings:
        raise ValueError(f"{model_dir}: an untied lm_head is not written by this exporter")
    state = load_state_dict(model_dir, parameter_shapes(config), config)
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[precision]

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), "gpt2")
    writer.add_name(f"{model_dir.name} ({precision})")
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.mlp_width)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_file_type(file_type)
    if precision == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types, merges = gpt2_vocabulary(load_tokenizer(model_dir, config.vocab_size))
    if len(tokens) != config.vocab_size:
        raise ValueError(f"{model_dir}: the tokenizer has {len(tokens)} tokens, the embedding {config.vocab_size} rows")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_unk_token_id(config.eos_token_id)
    writer.add_add_bos_token(False)

    for name, array in state.items():
        target = gguf_name(name)
        if name.endswith(CONV1D):
            array = np.ascontiguousarray(array.T)  # [in, out] -> [out, in]: a row per output, as ggml's matmul wants
        kind = tensor_precision(target, array.shape, precision)
        data = gguf.quants.quantize(np.asarray(array, dtype=np.float32), qtype[kind])
        writer.add_tensor(target, data, raw_dtype=qtype[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gguf_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--precision", choices=PRECISIONS, default="f32")
    args = parser.parse_args(argv)
    path = write_gguf(args.model_dir, args.out, args.precision)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
