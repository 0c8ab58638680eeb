"""The LLIA denoiser: motion UNet + Audio Layer + Face Locator + reference attention + states."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNetMotionModel

from ..config import LLIAConfig
from .attention import GatedReferenceAttnProcessor, ReferenceAttnProcessor
from .audio_encoder import AudioEncoder
from .face_locator import FaceLocator
from .feature_reuse import DeepFeatures, motion_unet_pass
from .mouth_map import MouthMap, MouthPaint
from .mouth_warp import NEUTRAL_MOUTH, mouth_region, warp_patch_latent
from ..states import SPEAKING
from .unet_blocks import contiguous_motion_inputs, phase_upsamplers, processor_map, split_geglu, unet_kwargs


class ClipConditioning:
    """One clip's conditioning as the denoiser uses it: filled by the clip's first call, read by the later ones.

    Everything the denoiser derives from its inputs other than the noisy sample and the timestep
    (audio tokens, the face-locator and mouth-map terms, the reference and flag channels, the
    residual region, the warped reference) is the same at every step of a clip; recomputing it
    took about 30 of a later step's 270 ms (bundled model, 17 frames, one thread). It belongs to
    one clip and one set of inputs (its guidance rows, keep masks and mouth shapes): a new clip
    needs a new instance.
    """

    def __init__(self):
        self.values: dict | None = None

    def to(self, device) -> "ClipConditioning":
        """The same values on ``device`` (nothing to move while empty)."""
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device)
            return type(v)(move(t) for t in v) if isinstance(v, (list, tuple)) else v

        moved = ClipConditioning()
        if self.values is not None:
            moved.values = {k: move(v) for k, v in self.values.items()}
        return moved


class LLIADenoiser(nn.Module):
    """Predicts v (or noise) for a clip of latents.

    Per frame the UNet input is [noisy latent (+ face-locator and mouth-map residuals) ; reference latent
    (if ``concat_reference``) ; motion flag]. Motion frames (the previous clip's last clean
    latents) sit at the start of the frame axis with flag 1, so the temporal attention carries
    motion across clip boundaries; their outputs are ignored by the sampler and the loss.
    """

    def __init__(self, config: LLIAConfig):
        super().__init__()
        if config.reference_skip and config.prediction_type != "sample":
            raise ValueError("reference_skip needs prediction_type 'sample' (the skip adds the reference to x0)")
        self.config = config
        c = config.autoencoder.latent_channels
        in_channels = c * (2 if config.concat_reference else 1) + 1
        self.unet = UNetMotionModel(in_channels=in_channels, out_channels=c, **unet_kwargs(config, motion=True))
        def reference_processor(key, attn):
            if config.reference_gate and not attn.is_cross_attention:
                return GatedReferenceAttnProcessor(key, attn.inner_dim)
            return ReferenceAttnProcessor(key)

        self.unet.set_attn_processor(processor_map(self.unet, reference_processor))
        contiguous_motion_inputs(self.unet)
        split_geglu(self.unet)
        phase_upsamplers(self.unet)
        if config.reference_skip:  # start exactly at "the frame is the portrait"
            nn.init.zeros_(self.unet.conv_out.weight)
            nn.init.zeros_(self.unet.conv_out.bias)
        self.audio_encoder = AudioEncoder(config.audio, config.num_states)
        self.face_locator = FaceLocator(config.autoencoder.downscale, c)
        self.mouth_map = None
        if config.mouth_map:
            if not config.has_mouth_source:
                raise ValueError("mouth_map needs a mouth source (config.mouth_model or config.audio.mouth_head)")
            self.mouth_map = MouthMap(c, config.framing)
        self.mouth_paint = None
        if config.mouth_paint:
            if not (config.has_mouth_source and config.reference_skip and config.autoencoder.kind == "patch"):
                raise ValueError("mouth_paint needs a mouth source, reference_skip and the 'patch' autoencoder")
            self.mouth_paint = MouthPaint(c, config.autoencoder.downscale, config.framing, gated=config.mouth_paint_gate)
        if config.reference_warp and not (config.has_mouth_source and config.reference_skip
                                          and config.autoencoder.kind == "patch"):
            raise ValueError("reference_warp needs a mouth source, reference_skip and the 'patch' autoencoder")
        if config.residual_region not in ("face", "mouth"):
            raise ValueError(f"unknown residual_region {config.residual_region!r}; use 'face' or 'mouth'")
        if config.residual_region == "mouth" and not (config.reference_skip and config.autoencoder.kind == "patch"):
            raise ValueError("residual_region 'mouth' needs reference_skip and the 'patch' autoencoder")

    @property
    def draws_mouth(self) -> bool:
        """Whether the frames follow predicted mouth shapes (mouth map, paint or warp)."""
        return self.mouth_map is not None or self.mouth_paint is not None or self.config.reference_warp

    def mouth_shape(self, audio_windows: torch.Tensor, states: torch.Tensor,
                    tokens: torch.Tensor | None = None) -> torch.Tensor:
        """(N, T, D) windows + (N,) states -> (N, 3) the mouth shape the audio encoder's head predicts
        (models without a mouth model; the others get their shapes from ``LLIAModel.mouth_shapes``)."""
        enc = self.audio_encoder
        if enc.mouth_head is None:
            raise ValueError("this model's mouth comes from its mouth model: pass the shapes "
                             "(LLIAModel.mouth_shapes) as the denoiser's mouth argument")
        if tokens is None:
            tokens = enc(audio_windows, states)
        mouth = enc.predict_mouth(tokens).detach()  # trained by its own loss only
        return self.gate_mouth(mouth, states)

    def gate_mouth(self, mouth: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """For warp models the mouth is the portrait's own (opening 0, neutral width, not round)
        outside the speaking state: listening to someone, or silent, it stays shut whatever the
        audio holds. The renderer warps the full-resolution picture with the same shapes."""
        if self.config.reference_warp:
            speaking = (states == SPEAKING).to(mouth.dtype)[:, None]
            neutral = torch.tensor(NEUTRAL_MOUTH, dtype=mouth.dtype, device=mouth.device)
            mouth = mouth * speaking + neutral * (1 - speaking)
        return mouth

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        audio_windows: torch.Tensor,
        states: torch.Tensor,
        reference_latent: torch.Tensor,
        reference_bank: dict[str, torch.Tensor],
        face_mask: torch.Tensor,
        motion_flags: torch.Tensor,
        audio_keep: torch.Tensor | None = None,
        reference_keep: torch.Tensor | None = None,
        mouth_anchor: torch.Tensor | None = None,
        mouth: torch.Tensor | None = None,
        deep: DeepFeatures | None = None,
        conditioning: "ClipConditioning | None" = None,
    ) -> torch.Tensor:
        """
        Args:
            sample: (B, C, F, h, w) noisy latents; motion-frame slots hold clean latents.
            timestep: (B,) or scalar diffusion timestep.
            audio_windows: (B, F, T, D) per-frame log-mel windows.
            states: (B, F) long state labels.
            reference_latent: (B, C, h, w) encoded portrait.
            reference_bank: ReferenceNet output for the B portraits.
            face_mask: (B, 1, H, W) face-region mask at pixel resolution.
            motion_flags: (B, F) 1 for motion frames, 0 for frames to generate.
            audio_keep / reference_keep: (B, F) bool, False drops that condition (guidance).
            mouth_anchor: (B, 3) the portrait's mouth in its crop (``framing.py``) for the mouth
                map and paint; None = the framing contract's mouth (the synthetic training data).
            mouth: (B, F, 3) the mouth shapes to draw; None = the audio encoder's mouth head's (models
                without a mouth model; the others must pass them, ``LLIAModel.mouth_shapes``).
            deep: a later consistency step of the same clip reuses the first step's deep UNet
                features kept here (``feature_reuse.py``); None = a plain full pass.
            conditioning: one clip's sample-independent values, filled by its first call and read by
                the later ones (:class:`ClipConditioning`); None = computed for this call only.
        Returns:
            (B, C, F, h, w) model prediction.
        """
        b, c, f, h, w = sample.shape
        cond = conditioning.values if conditioning is not None else None
        if cond is None:
            cond = self._condition(sample, audio_windows, states, reference_latent, face_mask, motion_flags,
                                   audio_keep, reference_keep, mouth_anchor, mouth, split_stem=conditioning is not None)
            if conditioning is not None:
                conditioning.values = cond
        x = sample
        for term in cond["added"]:  # face locator, mouth map
            x = x + term
        stem = None
        if "stem" in cond:  # conv_in over the sample's channels; the rest of its input was convolved once
            weight, padding, constant = cond["stem"]
            flat = x.transpose(1, 2).reshape(b * f, c, h, w)
            stem = (F.conv2d(flat, weight, None, padding=padding).view(b, f, -1, h, w) + constant).view(b * f, -1, h, w)
        else:
            x = torch.cat([x, *cond["concat"]], dim=1)

        kwargs = {"reference_bank": reference_bank, "num_frames": f}
        if reference_keep is not None:
            kwargs["reference_keep"] = reference_keep.reshape(b * f)
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if deep is None and stem is None:
            out = self.unet(x, timestep, encoder_hidden_states=cond["tokens"], cross_attention_kwargs=kwargs).sample
        else:
            out = motion_unet_pass(self.unet, x, timestep, cond["tokens"], kwargs, deep, stem)
        if "region" in cond:  # the residual only around the mouth, pixel by pixel
            out = out * cond["region"].to(out.dtype)
        if "skip" in cond:
            skip = cond["skip"].to(out.dtype)
            out = out + skip
            if self.mouth_paint is not None:
                ref = skip.expand(-1, -1, f, -1, -1).transpose(1, 2).reshape(b * f, c, h, w)
                flat = out.transpose(1, 2).reshape(b * f, c, h, w)
                out = self.mouth_paint(cond["mouth"], ref, flat, cond["anchor"]).to(out.dtype).reshape(
                    b, f, c, h, w).transpose(1, 2)
        return out

    def _condition(self, sample, audio_windows, states, reference_latent, face_mask, motion_flags, audio_keep,
                   reference_keep, mouth_anchor, mouth, split_stem: bool) -> dict:
        """What the denoiser computes from everything but the noisy sample and the timestep (see
        :class:`ClipConditioning`): audio tokens, the terms added to the sample, the channels concatenated to
        it, and the residual region and reference skip applied to the UNet output. ``split_stem``: the
        reference's share of ``conv_in`` as one frame's convolution (the caller runs the UNet through
        ``motion_unet_pass``)."""
        b, c, f, h, w = sample.shape
        flat_keep = None if audio_keep is None else audio_keep.reshape(b * f)
        flat_windows = audio_windows.reshape(b * f, *audio_windows.shape[2:]).to(sample.dtype)
        tokens = self.audio_encoder(flat_windows, states.reshape(b * f), flat_keep)
        added = [self.face_locator(face_mask.to(sample.dtype))[:, :, None]]
        if mouth is not None:
            mouth = mouth.reshape(b * f, 3).to(sample.dtype)
        elif self.draws_mouth:
            mouth = self.mouth_shape(flat_windows, states.reshape(b * f), tokens)
        anchor = None if mouth_anchor is None else mouth_anchor.reshape(b, 1, 3).expand(b, f, 3).reshape(b * f, 3)
        if self.mouth_map is not None:
            added.append(self.mouth_map(mouth, h, anchor).to(sample.dtype).reshape(b, f, c, h, w).transpose(1, 2))
        cond = {"tokens": tokens, "added": added, "mouth": mouth, "anchor": anchor}
        flags = motion_flags.to(sample.dtype)[:, None, :, None, None].expand(-1, 1, -1, h, w)
        conv_in = self.unet.conv_in
        if self.config.concat_reference and split_stem and type(conv_in) is nn.Conv2d and conv_in.bias is not None:
            # conv_in is linear in its input channels [sample ; reference ; flag]: the reference's share is
            # one frame's convolution (x keep per frame), the flag's a fixed map (x 0 or 1 per frame); with
            # the bias they make one constant per clip, so each step convolves the sample's channels only
            weight, pad = conv_in.weight, conv_in.padding
            part = F.conv2d(reference_latent.to(weight.dtype), weight[:, c:2 * c], None, padding=pad)[:, None]
            if reference_keep is not None:
                part = part * reference_keep.to(part.dtype)[:, :, None, None, None]
            ones = torch.ones((1, 1, h, w), dtype=weight.dtype, device=weight.device)
            flag_map = F.conv2d(ones, weight[:, 2 * c:2 * c + 1], None, padding=pad)
            constant = part + flags.transpose(1, 2).to(weight.dtype) * flag_map + conv_in.bias[:, None, None]
            cond["stem"] = (weight[:, :c].contiguous(), pad, constant)
        elif self.config.concat_reference:
            ref = reference_latent[:, :, None].expand(-1, -1, f, -1, -1).to(sample.dtype)
            if reference_keep is not None:
                ref = ref * reference_keep.to(sample.dtype)[:, None, :, None, None]
            cond["concat"] = [ref, flags]
        else:
            cond["concat"] = [flags]
        if self.config.residual_region == "mouth":
            ds = self.config.autoencoder.downscale
            region = mouth_region(h * ds, self.config.framing,
                                  None if mouth_anchor is None else mouth_anchor.reshape(b, 3), b)
            region = F.pixel_unshuffle(region, ds).repeat(1, c // (ds * ds), 1, 1)
            cond["region"] = region[:, :, None]
        if self.config.reference_skip:
            skip = reference_latent[:, :, None]
            if self.config.reference_warp:
                ref = reference_latent[:, None].expand(b, f, *reference_latent.shape[1:]).reshape(b * f, c, h, w)
                warped = warp_patch_latent(ref.float(), mouth.float(), self.config.framing,
                                           self.config.autoencoder.downscale, anchor, self.config.opening_light)
                skip = warped.reshape(b, f, c, h, w).transpose(1, 2)
            if reference_keep is not None:
                skip = skip * reference_keep.to(skip.dtype)[:, None, :, None, None]
            cond["skip"] = skip
        return cond
