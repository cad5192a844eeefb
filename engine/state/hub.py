"""Turn a model argument into a directory: a local path, or a published name through the
Hugging Face cache.

A published name ("gpt2", "gpt2-medium", "openai-community/gpt2-large", "distilgpt2", ..., or a size
as the R gpt2 package names them, "124M", "355M", "774M", "1558M") is looked
up first in the standard Hugging Face cache on disk (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
`~/.cache/huggingface/hub`), under both the repository's current id and its old short id, so a model
that any Hugging Face tool already downloaded is reused. Only then is it downloaded into that cache
by the Hugging Face hub client, which shows a progress bar. Any other "owner/name" is taken as a hub
repository id.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..base.checks import shown
from ..base.errors import InputError, ModelNotFoundError
from ..base.files import FILE, is_what, read_bytes, what_is_at

# Short name -> repository id on the Hugging Face hub.
PUBLISHED = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
# The sizes by parameter count, as OpenAI's release and the R gpt2 package name them (117M and 345M
# are OpenAI's first names for 124M and 355M).
SIZE_ALIASES = {
    "124M": "gpt2",
    "117M": "gpt2",
    "355M": "gpt2-medium",
    "345M": "gpt2-medium",
    "774M": "gpt2-large",
    "1558M": "gpt2-xl",
}
# The files a model needs (the weights in one file or in shards).
NEEDED_FILES = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
]


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as the hub client resolves it from the environment."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def repo_ids_for(name: str) -> list[str]:
    """Hub repository ids under which `name` may be cached, current id first."""
    short = name.split("/", 1)[1] if name.startswith(("openai-community/", "distilbert/")) else name
    if short in PUBLISHED:
        return [PUBLISHED[short], short]  # the old short ids ("gpt2") were repositories of their own
    return [name]


def is_complete_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    )


def find_in_cache(repo_id: str, cache_dir: Path) -> Path | None:
    """The snapshot directory of `repo_id` in the hub cache, if a complete one is there."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    try:
        commit = read_bytes(ref, ModelNotFoundError, 1024).decode("ascii").strip() if ref.is_file() else ""
    except (ModelNotFoundError, UnicodeDecodeError):  # an unreadable ref: look at the snapshots instead
        commit = ""
    if commit and "/" not in commit and commit not in (".", ".."):
        candidate = snapshots / commit
        if is_complete_model_dir(candidate):
            return candidate
    # No usable ref: take the newest complete snapshot.
    complete = [s for s in snapshots.iterdir() if is_complete_model_dir(s)]
    return max(complete, key=lambda s: s.stat().st_mtime) if complete else None


def resolve_model_dir(name_or_path: str | os.PathLike, *, local_files_only: bool = False) -> Path:
    """A directory holding config.json and the weights, for a path or a published model name."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(f"the model must be a directory path or a published name, got {shown(name_or_path)}")
    text = os.fspath(name_or_path)
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise InputError(f"the model must be a directory path or a published name, got {shown(text)}")
    path = Path(text).expanduser()
    kind = what_is_at(path)
    if kind == "a directory":
        return path
    if kind == FILE:
        raise ModelNotFoundError(
            f"{path}: is a file; pass the model directory that holds config.json and model.safetensors"
        )
    if kind is not None:  # a dangling link, a link loop, a FIFO, ...: something is there, just not a model
        raise ModelNotFoundError(f"{path}: {is_what(kind)}, not a model directory")
    # A hub id is "name" or "owner/name"; anything else that does not exist is a mistyped path.
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
    if looks_like_path:
        raise ModelNotFoundError(f"{text}: no such model directory")
    text = SIZE_ALIASES.get(text, text)
    if "/" not in text and text not in PUBLISHED:
        raise ModelNotFoundError(
            f"unknown model {shown(text)}: not a directory, and not a published name "
            f"({', '.join(PUBLISHED)}, or {'/'.join(k for k in SIZE_ALIASES if k not in ('117M', '345M'))})"
        )

    cache_dir = hf_cache_dir()
    candidates = repo_ids_for(text)
    for repo_id in candidates:
        found = find_in_cache(repo_id, cache_dir)
        if found is not None:
            return found

    looked = ", ".join("models--" + r.replace("/", "--") for r in candidates)
    where = f"looked for {looked} in the Hugging Face cache {cache_dir}"
    advice = "pass the path of a local model directory (config.json + model.safetensors) instead"
    if local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ModelNotFoundError(f"model {shown(text)} is not downloaded ({where}) and downloads are off; {advice}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(candidates[0], allow_patterns=NEEDED_FILES, cache_dir=cache_dir))
    except Exception as error:  # network, authentication, missing repository: all end the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotFoundError(
            f"model {shown(text)} is not downloaded ({where}) and the download failed ({reason}); {advice}"
        ) from None
