"""Benchmarks: this engine and Hugging Face transformers + PyTorch side by side (python -m benchmarks.run)."""
