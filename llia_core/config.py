"""Model configurations: one architecture, several sizes.

A :class:`LLIAConfig` fully describes a model; it is stored inside every checkpoint, so a file
always knows its own architecture. Configs hold no file paths.

| name       | pixels | autoencoder                     | denoiser latent |
|------------|--------|---------------------------------|-----------------|
| demo       | 128    | patch (lossless space-to-depth) | 48 x 32 x 32    |
| sd15-384   | 384    | SD1.5 VAE (AutoencoderKL)       | 4 x 48 x 48     |
| sd15-512   | 512    | SD1.5 VAE (AutoencoderKL)       | 4 x 64 x 64     |
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import CheckpointError

@dataclass(frozen=True)
class AutoencoderConfig:
    """Pixel <-> latent codec.

    Args:
        kind: "patch" (space-to-depth by ``downscale``, exactly invertible, plus a small learned
            decoder refiner) or "kl" (diffusers ``AutoencoderKL``, e.g. the SD1.5 VAE).
        downscale: pixels per latent cell along one side.
        latent_channels: channels of the latent (3 * downscale**2 for "patch").
        block_out_channels: "kl" encoder/decoder widths; "patch" refiner width (first entry).
        scaling_factor: latents are multiplied by this so they have roughly unit variance.
    """

    kind: str = "patch"
    downscale: int = 4
    latent_channels: int = 48
    block_out_channels: tuple[int, ...] = (32,)
    layers_per_block: int = 1
    scaling_factor: float = 1.0


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Per-frame log-mel windows -> audio tokens (where audio becomes tokens).

    Args:
        n_mels: mel bands of the log-mel features (100 frames/s at 16 kHz).
        context: audio tokens on each side of the frame's own token.
        mel_per_token: mel frames sampled inside one token's span.
        token_seconds: duration of one token (the training frame period), independent of output fps.
        num_layers: transformer layers mixing the tokens of one frame.
        dim: token width (equals the denoiser's cross-attention width).
        mouth_head: a linear head on the frame's own token that predicts the mouth (opening, width,
            roundness). Trained with an auxiliary loss when ground truth exists, it gives the audio
            path a direct signal instead of only the few mouth pixels of the denoising loss.
        features: what the windows are made of: "log-mel" (``n_mels`` mel bands, the default) or
            "whisper" (a Whisper encoder's last hidden state, ``n_mels`` = its width, e.g. 384 for
            whisper-tiny; ``audio/whisper.py``), the paper-scale choice.
    """

    n_mels: int = 80
    context: int = 2
    mel_per_token: int = 4
    token_seconds: float = 0.04
    num_layers: int = 1
    dim: int = 128
    mouth_head: bool = False
    features: str = "log-mel"

    @property
    def num_tokens(self) -> int:
        return 2 * self.context + 1


@dataclass(frozen=True)
class HeadMotionConfig:
    """The head-motion model (``models/head_model.py``): the head's pose and the brows from the speech.

    Args:
        frames_per_step: video frames between the poses it draws (the frames between are interpolated):
            it hears each step's frames before drawing the pose at the step's end, so live mode needs
            ``frames_per_step - 1`` frames of audio ahead (the mouth model already reads 120 ms ahead).
        bands: mel band groups it hears (the spectrum's shape, besides the loudness).
        hidden: width of its recurrent state (seconds of prosody and of its own motion).
        dropout: dropout while training.
    """

    frames_per_step: int = 4
    bands: int = 8
    hidden: int = 96
    dropout: float = 0.1


@dataclass(frozen=True)
class MouthPainterConfig:
    """The mouth painter (``models/mouth_painter.py``): the inside of an open mouth, painted at the
    mouth's own size in the paste-back.

    Args:
        channels: widths of its three scales (window, half, quarter).
    """

    channels: tuple[int, int, int] = (16, 32, 64)


@dataclass(frozen=True)
class MouthModelConfig:
    """The audio-to-mouth model (``models/mouth_model.py``): a frame's mouth from the log-mel around it.

    Args:
        past_seconds / future_seconds: how far back and ahead of the frame's centre it listens
            (the look-ahead is latency in live mode).
        n_mels: mel bands (the same log-mel as the audio encoder's, 100 frames per second).
        width, strided_layers, hidden: convolution channels, stride-2 layers, MLP width.
        dropout: dropout while training.
        phones: 0, or how many phone classes it hears beside the log-mel (``audio/phones.py``: 40,
            PocketSphinx's English phones and silence), each 10 ms frame's label fixed ``phone_lag``
            frames after it (the newest ``phone_lag`` rows of a window hear no phone: not fixed yet).
    """

    past_seconds: float = 0.4
    future_seconds: float = 0.12
    n_mels: int = 80
    width: int = 96
    strided_layers: int = 3
    hidden: int = 128
    dropout: float = 0.1
    phones: int = 0
    phone_lag: int = 8

    @property
    def channels(self) -> int:
        """Columns of a window: the mel bands, then the phones."""
        return self.n_mels + self.phones

    @property
    def past_frames(self) -> int:
        return int(round(self.past_seconds * 100))

    @property
    def future_frames(self) -> int:
        return int(round(self.future_seconds * 100))

    @property
    def window_frames(self) -> int:
        """Log-mel frames (10 ms apart) one window holds: past, the frame's centre, future."""
        return self.past_frames + 1 + self.future_frames


@dataclass(frozen=True)
class UNetConfig:
    """Denoiser and ReferenceNet widths (diffusers UNetMotionModel / UNet2DConditionModel).

    Args:
        block_out_channels: channels per resolution level.
        down_block_types: spatial block kinds; "CrossAttn" levels carry reference + audio attention.
        layers_per_block: ResNet layers per level.
        attention_head_dim: channels per attention head.
        norm_num_groups: GroupNorm groups.
        motion_max_seq_length: longest clip (incl. motion frames) the motion module can embed.
        motion_num_attention_heads: heads of the temporal attention.
        num_attention_heads: heads of the spatial attention per level; None = channels /
            ``attention_head_dim``. Stable Diffusion 1.x has 8 heads at every level (40-160 channels
            each), which a channels-per-head rule cannot express.
        use_linear_projection: the spatial transformers project in and out with linear layers
            (Stable Diffusion 2.x) instead of 1x1 convolutions (1.x).
    """

    block_out_channels: tuple[int, ...] = (32, 64, 112)
    down_block_types: tuple[str, ...] = ("DownBlock", "CrossAttnDownBlock", "CrossAttnDownBlock")
    layers_per_block: int = 1
    attention_head_dim: int = 16
    norm_num_groups: int = 16
    motion_max_seq_length: int = 32
    motion_num_attention_heads: int = 4
    num_attention_heads: tuple[int, ...] | None = None
    use_linear_projection: bool = False

    def heads(self) -> tuple[int, ...]:
        """Spatial attention heads per level."""
        if self.num_attention_heads is not None:
            return tuple(self.num_attention_heads)
        return tuple(max(1, c // self.attention_head_dim) for c in self.block_out_channels)


@dataclass(frozen=True)
class LLIAConfig:
    """Everything that defines one LLIA model.

    Args:
        name: config name (``demo``, ``sd15-384``, ``sd15-512`` or a user's own).
        resolution: square pixel size of generated frames.
        fps: frame rate the model was trained at (audio tokens span 1/fps each).
        max_clip_frames: longest clip (new frames) the model was trained with.
        motion_frames: frames of the previous clip fed back to condition the next.
        num_states: number of state labels (speaking, listening, idle).
        concat_reference: also concatenate the reference latent to the denoiser input
            (cheap identity anchor for small models, as image-to-video models do).
        reference_skip: the denoiser predicts the clean frame as reference latent + a learned
            residual (needs prediction_type "sample"), so an untrained or small model starts from
            the portrait instead of from noise and only has to learn what moves.
        face_scale: crop side / face box side used to frame portraits (``framing.Framing.scale``).
        crop_centre_y: height of the crop's centre in face-box units (0: the whole face; the
            ``real-lower`` config's lower-face crop sits lower, ``framing.Framing``).
        mouth_map: draw the audio encoder's predicted mouth shape at the mouth position and add it
            to the noisy latents at full latent resolution (needs ``audio.mouth_head``); see
            ``models/mouth_map.py``.
        mouth_paint: also draw it at pixel resolution and add what it changes to the predicted
            clean frame (needs a mouth source, ``reference_skip`` and the "patch" autoencoder);
            see ``MouthPaint`` in ``models/mouth_map.py``.
        mouth_paint_gate: the paint blends its proposal over the prediction with a learned gate;
            False: it owns the lips cells outright (gate 1 there).
        reference_warp: the reference skip is the reference warped to the predicted mouth shape
            (``models/mouth_warp.py``), so the model moves this face's own pixels and only paints
            what the warp cannot show; the mouth is shut outside the speaking state. Needs
            ``reference_skip``, a mouth source and the "patch" autoencoder. The same warp is applied
            to the full-resolution picture when the face is pasted back.
        reference_gate: the reference reaches the denoiser's self-attention through a separate
            attention over the reference tokens, added with a per-channel gate that starts at zero,
            instead of as extra keys of one softmax (``models/attention.py``). A model converted from
            Stable Diffusion then starts as exactly that UNet and learns how much reference to take.
        opening_light: how bright the warped reference (the denoiser's x0 skip) leaves the inside
            of an open mouth against the lip line the warp stretches there: 1 as it is; below 1 a dark
            cavity (``mouth_warp.darken_opening``) the residual paints teeth and tongue into, the same
            start on every face whatever its lipstick. The paste-back keeps it as part of the residual.
        residual_region: where the denoiser's residual may change the (warped) reference: "face"
            (everywhere) or "mouth" (a soft region from the nose to below the chin,
            ``mouth_warp.mouth_region``; eyes, forehead and background stay the portrait's own).
        prediction_type: what the denoiser predicts ("sample", "v_prediction" or "epsilon").
        num_train_timesteps: diffusion steps of the training noise schedule.
        mouth_model: the audio-to-mouth network (``models/mouth_model.py``) that gives the mouth
            map, paint and warp their shapes; None = the audio encoder's mouth head does.
        head_model: the head-motion network (``models/head_model.py``): head pose and brows from the
            speech; None = the head stays still.
        mouth_painter: the network that paints the inside of an open mouth in the paste-back
            (``models/mouth_painter.py``); None = the paste-back draws it.
    """

    name: str = "demo"
    resolution: int = 128
    fps: float = 25.0
    max_clip_frames: int = 16
    motion_frames: int = 2
    num_states: int = 3
    concat_reference: bool = True
    reference_skip: bool = True
    face_scale: float = 1.8
    crop_centre_y: float = 0.0
    mouth_map: bool = False
    mouth_paint: bool = False
    mouth_paint_gate: bool = True
    reference_warp: bool = False
    reference_gate: bool = False
    opening_light: float = 1.0
    residual_region: str = "face"
    prediction_type: str = "sample"
    num_train_timesteps: int = 1000
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    mouth_model: MouthModelConfig | None = None
    head_model: HeadMotionConfig | None = None
    mouth_painter: MouthPainterConfig | None = None

    @property
    def has_mouth_source(self) -> bool:
        """Whether something predicts the mouth from the audio (the mouth model or the encoder's head)."""
        return self.mouth_model is not None or self.audio.mouth_head

    @property
    def framing(self):
        """The part of the face this model's crop shows (``framing.Framing``)."""
        from .framing import Framing

        return Framing(self.face_scale, self.crop_centre_y)

    def portrait_view(self, face_scale: float | None = None):
        """-> (the framing to crop a portrait with, a note or None). ``face_scale``: a user's crop width
        on the whole-face scale (1.8 or None: the model's own framing; 2.4: a third wider). A model that
        warps the mouth draws the warp in its own framing and keeps it."""
        view = self.framing
        if face_scale is None or abs(face_scale - 1.8) < 1e-6:
            return view, None
        if self.reference_warp:
            return view, (f"face scale {face_scale:g} ignored: this model moves the mouth in its own framing "
                          "(use 1.8)")
        return view.scaled(face_scale / 1.8), None

    @property
    def latent_size(self) -> int:
        return self.resolution // self.autoencoder.downscale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LLIAConfig":
        """Rebuild a config, rejecting unknown fields (they mean another code version)."""
        try:
            nested = {
                "autoencoder": AutoencoderConfig,
                "audio": AudioEncoderConfig,
                "unet": UNetConfig,
                "mouth_model": MouthModelConfig,
                "head_model": HeadMotionConfig,
                "mouth_painter": MouthPainterConfig,
            }
            kwargs = dict(data)
            for key, sub in nested.items():
                if key in kwargs and kwargs[key] is not None:
                    value = dict(kwargs[key])
                    for k, v in value.items():
                        if isinstance(v, list):
                            value[k] = tuple(v)
                    kwargs[key] = sub(**value)
            return cls(**kwargs)
        except TypeError as exc:
            raise CheckpointError(
                f"the model config does not match this version of LLIA ({exc}); "
                "update the llia pack or use a checkpoint made by this version"
            ) from None

    @classmethod
    def from_json(cls, text: str) -> "LLIAConfig":
        return cls.from_dict(json.loads(text))


_SD15_UNET = UNetConfig(
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock", "CrossAttnDownBlock", "CrossAttnDownBlock", "DownBlock"),
    layers_per_block=2,
    attention_head_dim=40,
    num_attention_heads=(8, 8, 8, 8),  # SD1.5: 8 heads at every level
    norm_num_groups=32,
    motion_max_seq_length=32,
    motion_num_attention_heads=8,
)
_SD15_VAE = AutoencoderConfig(
    kind="kl",
    downscale=8,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    scaling_factor=0.18215,
)
_SD15_AUDIO = AudioEncoderConfig(n_mels=80, context=2, mel_per_token=4, num_layers=4, dim=768)

_DEMO = LLIAConfig(audio=AudioEncoderConfig(mouth_head=True), mouth_map=True)

_REAL = dataclasses.replace(_DEMO, name="real", reference_warp=True, residual_region="mouth",
                            audio=dataclasses.replace(_DEMO.audio, mouth_head=False),
                            mouth_model=MouthModelConfig(phones=40), head_model=HeadMotionConfig())

CONFIGS: dict[str, LLIAConfig] = {
    "demo": _DEMO,
    # the demo base model with a mouth paint trained on top (scripts/train_bundled.sh); they keep the
    # name "demo": the same model family, one head more. The bundled model is "demo-paint-full"
    # (the paint owns the lips cells); "demo-paint" blends it in with a learned gate.
    "demo-paint": dataclasses.replace(_DEMO, mouth_paint=True),
    "demo-paint-full": dataclasses.replace(_DEMO, mouth_paint=True, mouth_paint_gate=False),
    # the real-people model: the demo network whose x0 is the reference warped by the mouth model's
    # shapes + a residual (the mouth model learned from real videos' landmarks and synthetic voices), and a
    # head-motion model (the head's pose and the brows from the speech, learned from real talkers' pose tracks)
    "real": _REAL,
    # the same model on a lower-face crop (nose to below an opened jaw), where an open mouth is ~60 px wide
    # instead of ~23, starting the inside of an open mouth from a dark cavity: the working area of the
    # learned mouth (issue #36; being trained, not bundled yet)
    "real-lower": dataclasses.replace(_REAL, face_scale=0.68, crop_centre_y=0.68, opening_light=0.3),
    "sd15-384": LLIAConfig(
        name="sd15-384", resolution=384, autoencoder=_SD15_VAE, audio=_SD15_AUDIO, unet=_SD15_UNET,
        concat_reference=False, reference_skip=False, reference_gate=True, prediction_type="v_prediction",
    ),
    "sd15-512": LLIAConfig(
        name="sd15-512", resolution=512, autoencoder=_SD15_VAE, audio=_SD15_AUDIO, unet=_SD15_UNET,
        concat_reference=False, reference_skip=False, reference_gate=True, prediction_type="v_prediction",
    ),
}


def get_config(name: str) -> LLIAConfig:
    """Look up a named config."""
    if name not in CONFIGS:
        raise CheckpointError(
            f"unknown model config '{name}'; choose one of {', '.join(sorted(CONFIGS))}"
        )
    return CONFIGS[name]
