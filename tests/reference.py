"""The reference: Hugging Face GPT2LMHeadModel in float32 (eager attention) on the same files."""

import functools

import numpy as np
import torch
from transformers import GPT2LMHeadModel


@functools.lru_cache(maxsize=2)
def hf_model(model_dir) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def hf_logits(model_dir, ids, attention_mask=None, position_ids=None) -> np.ndarray:
    """ids [B, T] -> float32 logits [B, T, V] from transformers."""
    with torch.no_grad():
        kwargs = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = torch.as_tensor(np.asarray(attention_mask))
        if position_ids is not None:
            kwargs["position_ids"] = torch.as_tensor(np.asarray(position_ids))
        out = hf_model(model_dir)(torch.as_tensor(np.asarray(ids, dtype=np.int64)), **kwargs)
    return out.logits.numpy()
