"""Stable Diffusion 1.x / 2.x -> an LLIA model that starts as that Stable Diffusion.

``python -m llia_core convert --from-sd PATH --out MODEL.safetensors``. PATH is a diffusers
folder (``unet/``, ``vae/``), a single-file checkpoint with the original key names (what ComfyUI
keeps in ``models/checkpoints/``), or, only with ``allow_download``, a Hugging Face repo id (the
local cache is always tried first).

What comes from where:
* the LLIA config follows the SD UNet's own config (widths, levels, heads, cross-attention width:
  the audio tokens take the text's place, as in MuseTalk and LatentSync), so any SD-shaped UNet
  converts, down to the tiny ones the tests build;
* denoiser and ReferenceNet start as copies of the SD UNet, the codec as its VAE;
* every part LLIA adds starts as an exact zero: the motion modules' output projections (or an
  AnimateDiff ``MotionAdapter``'s weights with ``motion_adapter``), the reference attention's gate
  (``config.reference_gate``), the face locator, the motion-flag input channel. So before training
  the denoiser computes what the SD UNet computes with the audio tokens as its context
  (``tests/test_sd_conversion.py`` checks it). The state label rides on those tokens.

SD 1.x predicts noise under its own schedule; LLIA trains v-prediction under a zero-terminal-SNR
schedule (1-step sampling needs it), so the converted model keeps SD's weights but is fine-tuned to
that parameterisation, as Lin et al. (2024) did for SD 2.1.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .config import AudioEncoderConfig, AutoencoderConfig, LLIAConfig, UNetConfig
from .errors import CheckpointError

# UNet2DConditionModel settings that LLIA's motion UNet reproduces; a UNet with others cannot start as itself
_SD_UNET_SETTINGS = {
    "act_fn": "silu", "norm_eps": 1e-5, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "center_input_sample": False, "class_embed_type": None,
    "addition_embed_type": None, "time_cond_proj_dim": None, "encoder_hid_dim": None,
    "dual_cross_attention": False, "only_cross_attention": False, "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional", "conv_in_kernel": 3, "conv_out_kernel": 3,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "attention_type": "default", "transformer_layers_per_block": 1,
    "num_class_embeds": None, "time_embedding_dim": None, "timestep_post_act": None,
}
_SD_VAE_SETTINGS = {"act_fn": "silu", "use_quant_conv": True, "use_post_quant_conv": True,
                    "mid_block_add_attention": True}
_BLOCKS = {"DownBlock2D": "DownBlock", "CrossAttnDownBlock2D": "CrossAttnDownBlock"}
_HUB_FILES = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
              "vae/diffusion_pytorch_model.safetensors", "model_index.json"]


def _same(value, wanted) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_same(v, wanted) for v in value)
    return value == wanted


def _check_settings(config: dict, wanted: dict, what: str, source: str) -> None:
    odd = {k: config[k] for k, v in wanted.items() if k in config and not _same(config[k], v)}
    if odd:
        raise CheckpointError(
            f"'{source}' has a {what} LLIA cannot start from ({', '.join(f'{k}={v!r}' for k, v in odd.items())}); "
            "convert a Stable Diffusion 1.x or 2.x (SD-shaped) checkpoint"
        )


AUDIO_FEATURES = {  # --audio-features: what the audio encoder reads (``audio/whisper.py``)
    "log-mel": dict(features="log-mel", n_mels=80, mel_per_token=4),
    "whisper-tiny": dict(features="whisper", n_mels=384, mel_per_token=2),  # 384 wide, 50 states per second
}


def llia_config_from_sd(unet_config: dict, vae_config: dict, *, resolution: int = 384, name: str | None = None,
                        motion_adapter_config: dict | None = None, source: str = "checkpoint",
                        audio_features: str = "log-mel") -> LLIAConfig:
    """The LLIA config that holds this SD UNet and VAE (diffusers config dicts)."""
    _check_settings(unet_config, _SD_UNET_SETTINGS, "UNet setting", source)
    _check_settings(vae_config, _SD_VAE_SETTINGS, "VAE setting", source)
    down = tuple(unet_config["down_block_types"])
    if any(b not in _BLOCKS for b in down):
        raise CheckpointError(f"'{source}': unknown UNet blocks {down}; LLIA converts SD 1.x/2.x-style UNets")
    up = tuple(unet_config["up_block_types"])
    wanted_up = tuple(b.replace("Down", "Up") for b in reversed(down))
    if up != wanted_up or unet_config.get("in_channels", 4) != unet_config.get("out_channels", 4):
        raise CheckpointError(f"'{source}': the UNet's up blocks {up} do not mirror its down blocks; not SD-shaped")
    channels = tuple(unet_config["block_out_channels"])
    heads = unet_config.get("num_attention_heads") or unet_config.get("attention_head_dim") or 8
    heads = tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * len(channels)
    layers = unet_config.get("layers_per_block", 2)
    if isinstance(layers, (list, tuple)):
        if len(set(layers)) != 1:
            raise CheckpointError(f"'{source}': levels with different layer counts ({layers}) are not supported")
        layers = layers[0]
    motion_heads, motion_len = 8, 32
    if motion_adapter_config is not None:
        a = motion_adapter_config
        if tuple(a["block_out_channels"]) != channels or not _same(a["motion_layers_per_block"], layers):
            raise CheckpointError(
                f"the motion adapter is for a UNet of widths {tuple(a['block_out_channels'])} and "
                f"{a['motion_layers_per_block']} layers per level, this one has {channels} and {layers}: "
                "use an AnimateDiff adapter made for this Stable Diffusion version")
        if a.get("motion_norm_num_groups", 32) != unet_config.get("norm_num_groups", 32):
            raise CheckpointError("the motion adapter's norm groups differ from the UNet's; use a matching adapter")
        motion_heads, motion_len = a["motion_num_attention_heads"], a["motion_max_seq_length"]
        if isinstance(motion_heads, (list, tuple)):
            motion_heads = motion_heads[0]
    vae_channels = tuple(vae_config["block_out_channels"])
    if vae_config.get("norm_num_groups", 32) != min(32, vae_channels[0]):
        raise CheckpointError(f"'{source}': the VAE's norm groups ({vae_config.get('norm_num_groups')}) are not SD's")
    downscale = 2 ** (len(vae_channels) - 1)
    if resolution % (downscale * 2 ** (len(channels) - 1)):
        raise CheckpointError(f"--resolution {resolution} must be a multiple of {downscale * 2 ** (len(channels) - 1)} "
                              "for this UNet and VAE")
    latent = vae_config.get("latent_channels", 4)
    if unet_config.get("in_channels", 4) != latent:
        raise CheckpointError(f"'{source}': the UNet takes {unet_config.get('in_channels')} channels but the VAE "
                              f"makes {latent} (an inpainting or depth model?); convert a text-to-image SD model")
    dim = int(unet_config["cross_attention_dim"])
    unet = UNetConfig(
        block_out_channels=channels, down_block_types=tuple(_BLOCKS[b] for b in down), layers_per_block=int(layers),
        attention_head_dim=channels[0] // heads[0], num_attention_heads=heads,
        norm_num_groups=int(unet_config.get("norm_num_groups", 32)), motion_max_seq_length=int(motion_len),
        motion_num_attention_heads=int(motion_heads),
        use_linear_projection=bool(unet_config.get("use_linear_projection", False)),
    )
    autoencoder = AutoencoderConfig(kind="kl", downscale=downscale, latent_channels=latent,
                                    block_out_channels=vae_channels, layers_per_block=int(vae_config["layers_per_block"]),
                                    scaling_factor=float(vae_config.get("scaling_factor", 0.18215)))
    if audio_features not in AUDIO_FEATURES:
        raise CheckpointError(f"unknown --audio-features {audio_features!r}; use one of {', '.join(AUDIO_FEATURES)}")
    audio = AudioEncoderConfig(context=2, num_layers=4 if dim >= 256 else 1, dim=dim, **AUDIO_FEATURES[audio_features])
    return LLIAConfig(name=name or f"sd-{resolution}", resolution=resolution, autoencoder=autoencoder, audio=audio,
                      unet=unet, concat_reference=False, reference_skip=False, reference_gate=True,
                      prediction_type="v_prediction")


def _zero_motion_outputs(unet) -> None:
    """Zero the output projection of every motion module: each then adds exactly nothing."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            torch.nn.init.zeros_(module.proj_out.weight)
            torch.nn.init.zeros_(module.proj_out.bias)


def _load_motion_adapter(unet, adapter) -> None:
    for mine, theirs in zip(unet.down_blocks, adapter.down_blocks):
        mine.motion_modules.load_state_dict(theirs.motion_modules.state_dict())
    for mine, theirs in zip(unet.up_blocks, adapter.up_blocks):
        mine.motion_modules.load_state_dict(theirs.motion_modules.state_dict())
    if adapter.config.get("use_motion_mid_block") and getattr(adapter, "mid_block", None) is not None:
        unet.mid_block.motion_modules.load_state_dict(adapter.mid_block.motion_modules.state_dict())


def llia_from_sd(unet, vae, config: LLIAConfig, motion_adapter=None):
    """An LLIAModel of ``config`` whose networks start from the SD ``unet`` and ``vae`` (diffusers models)."""
    from .models import LLIAModel

    model = LLIAModel(config)
    sd = {k: v.float() for k, v in unet.state_dict().items()}
    model.reference_net.unet.load_state_dict(sd, strict=True)
    conv_in = model.denoiser.unet.conv_in.weight
    padded = torch.zeros_like(conv_in)
    padded[:, :sd["conv_in.weight"].shape[1]] = sd["conv_in.weight"]  # extra inputs (motion flag) start at zero
    missing, unexpected = model.denoiser.unet.load_state_dict({**sd, "conv_in.weight": padded}, strict=False)
    stray = [k for k in missing if "motion_modules" not in k and not k.endswith("processor.gate")]
    if unexpected or stray:
        raise CheckpointError(f"the SD UNet does not map onto LLIA's denoiser (missing {stray[:3]}, "
                              f"unexpected {unexpected[:3]}); this is a bug, please report it")
    _zero_motion_outputs(model.denoiser.unet)
    if motion_adapter is not None:
        _load_motion_adapter(model.denoiser.unet, motion_adapter)
    model.autoencoder.vae.load_state_dict({k: v.float() for k, v in vae.state_dict().items()}, strict=True)
    return model


# ---- the original (single-file) format ------------------------------------------------------------------

def _count(keys, prefix: str) -> int:
    """Number of consecutive integer children ``prefix.0``, ``prefix.1``, ... among ``keys``."""
    n = 0
    while any(k.startswith(f"{prefix}.{n}.") for k in keys):
        n += 1
    return n


def ldm_original_config(ckpt: dict) -> dict:
    """The parts of an original (LDM) config that diffusers' converters read, inferred from tensor shapes."""
    u = "model.diffusion_model."
    keys = [k for k in ckpt if k.startswith(u)]
    if not keys or not any(k.startswith("first_stage_model.") for k in ckpt):
        raise CheckpointError("the file is not a Stable Diffusion checkpoint (no model.diffusion_model.* "
                              "and first_stage_model.* tensors); pick an SD 1.x/2.x .safetensors")
    model_channels, in_channels = ckpt[u + "input_blocks.0.0.weight"].shape[:2]
    channels, attention_levels, layers = [], [], []
    level, ds, current, has_attn = 0, 1, 0, False
    for i in range(1, _count(keys, u + "input_blocks")):
        p = f"{u}input_blocks.{i}."
        if p + "0.op.weight" in ckpt:  # a downsample ends the level
            channels.append(current), layers.append(level), attention_levels.append(has_attn)
            level, has_attn, ds = 0, False, ds * 2
            continue
        current = ckpt[p + "0.out_layers.3.weight"].shape[0]
        has_attn = has_attn or (p + "1.proj_in.weight") in ckpt
        level += 1
    channels.append(current), layers.append(level), attention_levels.append(has_attn)
    if len(set(layers)) != 1:
        raise CheckpointError(f"the UNet has levels with different depths {layers}; not SD-shaped")
    attn = next(k for k in keys if k.endswith("transformer_blocks.0.attn2.to_k.weight"))
    context_dim = ckpt[attn].shape[1]
    linear = ckpt[attn.split("transformer_blocks")[0] + "proj_in.weight"].ndim == 2
    depth = _count(keys, attn.split(".transformer_blocks")[0] + ".transformer_blocks")
    unet = {"in_channels": int(in_channels), "out_channels": int(ckpt[u + "out.2.weight"].shape[0]),
            "model_channels": int(model_channels), "channel_mult": [c // model_channels for c in channels],
            "num_res_blocks": layers[0], "attention_resolutions": [2 ** i for i, a in enumerate(attention_levels) if a],
            "context_dim": int(context_dim), "transformer_depth": depth, "use_linear_in_transformer": linear}
    if linear:  # SD 2.x: 64 channels per head
        unet["num_head_channels"] = 64
    else:  # SD 1.x: 8 heads everywhere
        unet["num_heads"] = 8
    v = "first_stage_model.encoder."
    ch = int(ckpt[v + "conv_in.weight"].shape[0])
    levels = _count(ckpt, v + "down")
    vae = {"in_channels": int(ckpt[v + "conv_in.weight"].shape[1]), "out_ch": int(ckpt["first_stage_model.decoder.conv_out.weight"].shape[0]),
           "ch": ch, "ch_mult": [int(ckpt[f"{v}down.{i}.block.0.conv2.weight"].shape[0]) // ch for i in range(levels)],
           "num_res_blocks": _count(ckpt, f"{v}down.0.block"), "z_channels": int(ckpt[v + "conv_out.weight"].shape[0]) // 2}
    return {"model": {"params": {"unet_config": {"params": unet}, "scale_factor": 0.18215,
                                 "first_stage_config": {"params": {"ddconfig": vae}}}}}


def sd_from_single_file(path) -> tuple:
    """A single-file SD checkpoint (original key names, safetensors) -> (UNet2DConditionModel, AutoencoderKL)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"'{path.name}' is not a .safetensors file; LLIA reads no pickled checkpoints: "
                              "use the .safetensors release of the model (or a diffusers folder)")
    try:
        ckpt = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"'{path.name}' could not be read ({type(exc).__name__}); it may be truncated") from None
    original = ldm_original_config(ckpt)
    with warnings.catch_warnings():  # image_size only sets sample_size, which LLIA does not use
        warnings.simplefilter("ignore", FutureWarning)
        unet_config = sfu.create_unet_diffusers_config_from_ldm(original, ckpt, image_size=512)
        vae_config = sfu.create_vae_diffusers_config_from_ldm(original, ckpt, image_size=512)
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**vae_config)
    unet.load_state_dict(sfu.convert_ldm_unet_checkpoint(ckpt, unet_config), strict=True)
    vae.load_state_dict(sfu.convert_ldm_vae_checkpoint(ckpt, vae_config), strict=True)
    return unet, vae


def load_sd(source, *, allow_download: bool = False) -> tuple:
    """(UNet2DConditionModel, AutoencoderKL) from a diffusers folder, a single file or (opt-in) a hub id."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return sd_from_single_file(path)
    if not path.exists() and "/" in text and not path.is_absolute() and not text.startswith("."):
        path = _hub_snapshot(text, allow_download)
    if not (path / "unet").is_dir() or not (path / "vae").is_dir():
        raise CheckpointError(f"'{source}' is neither a single-file checkpoint nor a diffusers Stable Diffusion "
                              "folder (with unet/ and vae/); point --from-sd at one of those")
    return (UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", local_files_only=True, low_cpu_mem_usage=False),
            AutoencoderKL.from_pretrained(str(path), subfolder="vae", local_files_only=True, low_cpu_mem_usage=False))


def _hub_snapshot(repo_id: str, allow_download: bool) -> Path:
    from .checkpoints import hub_snapshot

    path = hub_snapshot(repo_id, _HUB_FILES, allow_download, "download the diffusers folder by hand and pass its path")
    if path is None:
        raise CheckpointError(f"'{repo_id}' is not a local path and not in the Hugging Face cache; pass a local "
                              "folder or file, or add --allow-download to fetch it")
    return path


def load_motion_adapter(source, *, allow_download: bool = False):
    from diffusers import MotionAdapter

    local = Path(str(source)).expanduser().exists()
    try:
        return MotionAdapter.from_pretrained(str(source), local_files_only=local or not allow_download)
    except Exception as exc:
        raise CheckpointError(f"could not load the motion adapter '{source}' ({type(exc).__name__}); pass a diffusers "
                              "MotionAdapter folder (e.g. AnimateDiff's motion-adapter-v1-5-2), or --allow-download "
                              "for a hub id") from None


def convert_sd(source, out, *, resolution: int = 384, name: str | None = None, motion_adapter=None,
               allow_download: bool = False, dtype: torch.dtype = torch.float16, seed: int = 0,
               audio_features: str = "log-mel", whisper=None) -> Path:
    """Convert and save; returns the written path. Deterministic: the same inputs give the same file.

    With ``audio_features="whisper-tiny"`` the Whisper encoder is located now (``whisper`` folder,
    $LLIA_WHISPER, the model folders or the hub cache; downloaded with ``allow_download``), so
    training and generation find it later.
    """
    from .checkpoints import save_model

    if audio_features.startswith("whisper"):
        from .audio.whisper import resolve_whisper

        resolve_whisper(whisper, allow_download=allow_download)
    unet, vae = load_sd(source, allow_download=allow_download)
    adapter = None if motion_adapter is None else load_motion_adapter(motion_adapter, allow_download=allow_download)
    config = llia_config_from_sd(dict(unet.config), dict(vae.config), resolution=resolution, name=name,
                                 motion_adapter_config=None if adapter is None else dict(adapter.config),
                                 source=str(source), audio_features=audio_features)
    with torch.random.fork_rng():  # the new layers' random start is the same on every run
        torch.manual_seed(seed)
        model = llia_from_sd(unet, vae, config, adapter)
    return save_model(model, out, dtype=dtype, stage="converted", converted_from=Path(str(source)).name,
                      motion_adapter="" if motion_adapter is None else Path(str(motion_adapter)).name)


def describe_config(config: LLIAConfig) -> str:
    u = config.unet
    return (f"{config.name}: {config.resolution} px, UNet {u.block_out_channels} x {u.layers_per_block} layers, "
            f"{u.heads()} heads, audio width {config.audio.dim}, latent {config.autoencoder.latent_channels} x "
            f"{config.latent_size}^2")


__all__ = ["convert_sd", "llia_config_from_sd", "llia_from_sd", "load_sd", "sd_from_single_file", "ldm_original_config",
           "describe_config"]
