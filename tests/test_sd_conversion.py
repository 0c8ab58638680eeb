"""Stable Diffusion -> LLIA: both input forms, the converted model starts as SD, the added parts can learn."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from llia_core.checkpoints import load_model, read_config
from llia_core.cli import main
from llia_core.errors import CheckpointError
from llia_core.sd_conversion import convert_sd, load_sd
from sd_fixtures import UNET, save_diffusers_folder, save_single_file, tiny_sd


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    unet, vae = tiny_sd()
    root = tmp_path_factory.mktemp("sd")
    return unet, vae, save_diffusers_folder(unet, vae, root / "tiny-sd"), save_single_file(unet, vae, root / "tiny-sd.safetensors")


@pytest.fixture(scope="module")
def converted(sd, tmp_path_factory):
    out = tmp_path_factory.mktemp("llia") / "from-folder.safetensors"
    assert main(["convert", "--from-sd", str(sd[2]), "--out", str(out), "--resolution", "32", "--dtype", "fp32"]) == 0
    return out


def test_the_single_file_and_the_diffusers_folder_convert_to_the_same_model(sd, converted, tmp_path, capsys):
    out = tmp_path / "from-file.safetensors"
    assert main(["convert", "--from-sd", str(sd[3]), "--out", str(out), "--resolution", "32", "--dtype", "fp32"]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b = load_file(str(converted)), load_file(str(out))
    assert set(a) == set(b)
    sd_tensors = {k: v for k, v in sd[0].state_dict().items()}
    for key in a:  # the new layers' random start is seeded: the two files are the same
        assert torch.equal(a[key], b[key]), key
    # the ReferenceNet is the SD UNet, tensor for tensor
    for key, value in sd_tensors.items():
        assert torch.equal(a[f"reference_net.unet.{key}"], value), key
    config = read_config(converted)
    assert config.unet.block_out_channels == UNET["block_out_channels"] and config.unet.heads() == (8, 8)
    assert config.audio.dim == UNET["cross_attention_dim"] and config.autoencoder.downscale == 2
    assert config.reference_gate and config.prediction_type == "v_prediction"


def test_the_converted_denoiser_computes_what_the_sd_unet_computes(sd, converted):
    """Motion modules, reference gate, face locator and motion-flag channel all start as exact zeros."""
    unet = sd[0]
    model = load_model(converted)
    torch.manual_seed(1)
    f, h = 3, 16
    sample = torch.randn(2, 4, f, h, h)
    t = torch.tensor([500, 20])
    windows = torch.randn(2, f, model.config.audio.num_tokens, 4 * 80)
    states = torch.tensor([[0, 1, 2], [2, 2, 0]])
    ref = model.encode_reference(torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float())
    assert ref.bank and all(v.abs().sum() > 0 for v in ref.bank.values())  # a real reference is there
    flags = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    with torch.no_grad():
        out = model.denoiser(sample, t, windows, states, ref.latent, ref.bank, ref.face_mask, flags)
        tokens = model.denoiser.audio_encoder(windows.flatten(0, 1), states.flatten(0, 1))
        frames = sample.transpose(1, 2).flatten(0, 1)
        expected = unet(frames, t.repeat_interleave(f), encoder_hidden_states=tokens).sample
    expected = expected.reshape(2, f, 4, h, h).transpose(1, 2)
    assert out.abs().mean() > 0.05
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)


def test_the_added_parts_start_at_zero_but_learn(converted):
    model = load_model(converted).train().requires_grad_(True)
    d = model.denoiser
    gates = [p for n, p in d.named_parameters() if n.endswith("processor.gate")]
    assert gates and all(not g.any() for g in gates)
    sample = torch.randn(1, 4, 2, 16, 16)
    ref = model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    windows = torch.randn(1, 2, model.config.audio.num_tokens, 320)
    out = d(sample, torch.tensor([300]), windows, torch.zeros(1, 2, dtype=torch.long), ref.latent, ref.bank,
            ref.face_mask, torch.tensor([[1.0, 0.0]]))
    (out ** 2).mean().backward()
    motion_out = [m.proj_out for n, m in d.unet.named_modules() if n.endswith("motion_modules.0")]
    assert motion_out and all(not m.weight.any() for m in motion_out)
    for name, grad in [("reference gate", gates[0].grad), ("motion module", motion_out[0].weight.grad),
                       ("face locator", d.face_locator.proj_out.weight.grad),
                       ("motion-flag channel", d.unet.conv_in.weight.grad[:, 4])]:
        assert grad is not None and grad.abs().sum() > 0, name


def test_a_motion_adapter_starts_the_motion_modules(sd, tmp_path):
    from diffusers import MotionAdapter

    torch.manual_seed(3)
    adapter = MotionAdapter(block_out_channels=UNET["block_out_channels"], motion_layers_per_block=2,
                            motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=24)
    adapter.save_pretrained(tmp_path / "adapter")
    out = convert_sd(sd[2], tmp_path / "m.safetensors", resolution=32, motion_adapter=tmp_path / "adapter",
                     dtype=torch.float32)
    config = read_config(out)
    assert config.unet.motion_max_seq_length == 24 and config.unet.motion_num_attention_heads == 4
    tensors = load_file(str(out))
    theirs = adapter.state_dict()
    key = "down_blocks.1.motion_modules.1.proj_out.weight"
    assert theirs[key].abs().sum() > 0 and torch.equal(tensors[f"denoiser.unet.{key}"], theirs[key])
    assert torch.equal(tensors["denoiser.unet.mid_block.motion_modules.0.proj_in.weight"],
                       theirs["mid_block.motion_modules.0.proj_in.weight"])
    bad = MotionAdapter(block_out_channels=(64, 128), motion_layers_per_block=2, motion_norm_num_groups=8)
    bad.save_pretrained(tmp_path / "bad")
    with pytest.raises(CheckpointError, match="adapter is for a UNet of widths"):
        convert_sd(sd[2], tmp_path / "x.safetensors", resolution=32, motion_adapter=tmp_path / "bad")


def test_what_cannot_be_converted_says_why(sd, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other))
    with pytest.raises(CheckpointError, match="not a Stable Diffusion checkpoint"):
        load_sd(other)
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="no pickled checkpoints"):
        load_sd(pickled)
    with pytest.raises(CheckpointError, match="unet/ and vae/"):
        load_sd(tmp_path)
    with pytest.raises(CheckpointError, match="--allow-download"):
        load_sd("nobody-here/no-such-model")
    assert main(["convert", "--from-sd", str(sd[2]), "--out", str(tmp_path / "x.safetensors"), "--resolution", "30"]) == 2
    assert "multiple of 4" in capsys.readouterr().err


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = transformers.WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                        num_mel_bins=80, max_target_positions=16)
    path = tmp_path_factory.mktemp("whisper")
    transformers.WhisperModel(config).save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


def test_whisper_features_are_the_encoders_states_at_the_log_mel_rate(whisper_dir, monkeypatch):
    import transformers

    from llia_core.audio import encode_audio, feature_rows, log_mel

    monkeypatch.setenv("LLIA_WHISPER", str(whisper_dir))
    wave = torch.randn(16000 * 33) * 0.1  # two 30-second chunks
    rows = feature_rows(wave, 32, "whisper")
    assert rows.shape == log_mel(wave).shape[:1] + (32,)
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(whisper_dir)
    encoder = transformers.WhisperModel.from_pretrained(whisper_dir).get_encoder().eval()
    with torch.no_grad():  # the original runtime on the second chunk, 3 s long: 150 states
        second = encoder(extractor(wave[16000 * 30:].numpy(), sampling_rate=16000, return_tensors="pt").input_features)
    expected = second.last_hidden_state[0, :150]
    torch.testing.assert_close(rows[3000:3300:2], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rows[3001:3300:2], expected, atol=1e-5, rtol=1e-4)
    feats = encode_audio((wave[:16000 * 2].numpy(), 16000), 25, n_mels=32, mel_per_token=2, features="whisper")
    assert feats.windows.shape == (50, 5, 64)
    with pytest.raises(Exception, match="reads 80"):
        feature_rows(wave[:16000], 80, "whisper")


def test_a_whisper_model_converts_and_says_where_the_encoder_is_missing(sd, whisper_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LLIA_WHISPER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="no Whisper encoder found"):
        convert_sd(sd[2], tmp_path / "w.safetensors", resolution=32, audio_features="whisper-tiny")
    out = convert_sd(sd[2], tmp_path / "w.safetensors", resolution=32, audio_features="whisper-tiny",
                     whisper=whisper_dir)
    audio = read_config(out).audio
    assert audio.features == "whisper" and audio.n_mels == 384 and audio.mel_per_token == 2
