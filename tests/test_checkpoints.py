"""Strict checkpoint round trip, config in metadata, resolution order, clear errors."""

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from llia_core.checkpoints import load_model, read_config, resolve_model_path, save_model
from llia_core.errors import CheckpointError
from llia_core.models import LLIAModel

from conftest import tiny_config


@torch.no_grad()
def _run(model):
    torch.manual_seed(3)
    ref = model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    x = torch.randn(1, 48, 3, 8, 8)
    return model.denoiser(x, torch.tensor([700]), torch.randn(1, 3, 3, 160), torch.zeros(1, 3, dtype=torch.long),
                          ref.latent, ref.bank, torch.ones(1, 1, 32, 32), torch.zeros(1, 3))


def test_save_load_identical_outputs(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors", note="test")
    assert read_config(path) == tiny_model.config
    loaded = load_model(path)
    assert torch.equal(_run(tiny_model), _run(loaded))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_fp16_storage_loads_close(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m16.safetensors", dtype=torch.float16)
    loaded = load_model(path)
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.allclose(_run(tiny_model), _run(loaded), atol=5e-2)


def test_missing_and_unexpected_keys_are_named(tiny_model, tmp_path):
    from safetensors.torch import load_file

    path = save_model(tiny_model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    meta = {"format": "llia", "llia_config": tiny_model.config.to_json()}
    key = next(iter(tensors))
    broken = dict(tensors)
    broken.pop(key)
    broken["extra.weight"] = torch.zeros(1)
    save_file(broken, str(tmp_path / "b.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "b.safetensors")
    assert key in str(err.value) and "extra.weight" in str(err.value)


def test_wrong_config_is_rejected(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="'sd15-384' was requested"):
        load_model(path, expected_config="sd15-384")
    # a file whose tensors belong to another architecture than its metadata says
    other = LLIAModel(dataclasses.replace(tiny_config(), concat_reference=False))
    tensors = {k: v.contiguous() for k, v in other.state_dict().items()}
    save_file(tensors, str(tmp_path / "o.safetensors"),
              metadata={"format": "llia", "llia_config": tiny_model.config.to_json()})
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(tmp_path / "o.safetensors")


def test_truncated_and_foreign_files(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "t.safetensors")
    (tmp_path / "x.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(tmp_path / "x.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(CheckpointError, match="not an LLIA model"):
        load_model(tmp_path / "f.safetensors")


def test_resolution_order(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LLIA_MODELS_DIR", str(tmp_path))
    save_model(tiny_model, tmp_path / "mine.safetensors")
    assert resolve_model_path("mine.safetensors") == tmp_path / "mine.safetensors"
    with pytest.raises(CheckpointError, match="was not found"):
        resolve_model_path("nope.safetensors")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # tests never touch the network
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model_path("someone/llia-model")
    with pytest.raises(CheckpointError, match="could not download"):
        resolve_model_path("someone/llia-model", allow_download=True)
