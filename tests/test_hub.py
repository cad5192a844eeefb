"""Model names: the Hugging Face cache first, then a download; clear errors offline."""

import pytest

from engine import GPT2, ModelNotFoundError
from engine.base.config import GPT2Config
from engine.state.hub import resolve_model_dir
from engine.state.synthetic import write_checkpoint

CONFIG = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)


def fake_hub_cache(root, repo_id, commit="0123abcd"):
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = write_checkpoint(repo / "snapshots" / commit, CONFIG, seed=5)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


@pytest.mark.parametrize("name", ["gpt2", "openai-community/gpt2"])
def test_published_name_found_in_cache_under_its_current_id(hub_cache, name):
    snapshot = fake_hub_cache(hub_cache, "openai-community/gpt2")
    assert resolve_model_dir(name) == snapshot
    model = GPT2.from_pretrained(name)
    assert model.config.n_embd == 16


def test_published_name_found_under_its_old_short_id(hub_cache):
    snapshot = fake_hub_cache(hub_cache, "gpt2-medium")
    assert resolve_model_dir("openai-community/gpt2-medium") == snapshot


def test_distilgpt2_under_its_owner(hub_cache):
    snapshot = fake_hub_cache(hub_cache, "distilbert/distilgpt2")
    assert resolve_model_dir("distilgpt2") == snapshot


def test_offline_error_says_what_where_and_what_to_do(hub_cache):
    with pytest.raises(ModelNotFoundError) as info:
        GPT2.from_pretrained("gpt2-xl")
    message = str(info.value)
    assert "models--openai-community--gpt2-xl" in message and str(hub_cache) in message
    assert "local model directory" in message and "\n" not in message


def test_download_failure_is_one_clear_line(hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ModelNotFoundError, match=r"download failed .*local model directory") as info:
        resolve_model_dir("gpt2-large")
    assert "\n" not in str(info.value)


def test_unknown_name_and_missing_directory():
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'gtp2'"):
        resolve_model_dir("gtp2")
    with pytest.raises(ModelNotFoundError, match=r"no such model directory"):
        resolve_model_dir("./models/nothing-here")


def test_file_instead_of_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model_dir(tmp_path / "model.safetensors")


def test_incomplete_snapshot_is_not_used(hub_cache):
    snapshot = fake_hub_cache(hub_cache, "openai-community/gpt2")
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError):
        resolve_model_dir("gpt2")
