"""Synthetic talking-avatar data: identities, renderer, voices, mouth ground truth, clips, datasets."""

from .clips import KINDS, ClipData, make_clip
from .dataset import ClipDataset, generate_dataset, load_clip
from .identity import identity_from_id, split_of
from .render import FramePose, mouth_box, render_frame

__all__ = ["KINDS", "ClipData", "ClipDataset", "FramePose", "generate_dataset", "identity_from_id",
           "load_clip", "make_clip", "mouth_box", "render_frame", "split_of"]
