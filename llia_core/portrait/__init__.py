"""Portrait: image loading, face finding, crop + face-locator mask, paste-back."""

from .crop import CROP_MODES, Portrait, crop_portrait, default_face_mask, paste_back, prepare_portrait
from .face_detect import FaceBox, detect_faces
from .image_io import load_image

__all__ = ["CROP_MODES", "FaceBox", "Portrait", "crop_portrait", "default_face_mask", "detect_faces", "load_image",
           "paste_back", "prepare_portrait"]
