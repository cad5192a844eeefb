"""Weights and state: what a model is made of and what it keeps while it runs (the weight
dataclasses, reading checkpoints and finding them, the tokenizer, the KV cache, synthetic
checkpoints). Imports only the ground layer (engine.base) and the kernels."""
