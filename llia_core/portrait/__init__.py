"""Portrait: image loading, face landmarks, alignment to the framing contract, crop, paste-back."""

from .align import Alignment, align_landmarks, smooth_alignments
from .crop import CROP_MODES, Portrait, crop_image, crop_preview, prepare_portrait
from .expression import DEFAULT_EXPRESSION, EXPRESSIONS, apply_expression
from .face_detect import FaceBox, detect_faces
from .image_io import load_image
from .landmarks import FaceLandmarks, FaceTracker, find_faces
from .paste_back import DEFAULT_MAX_SIZE, OUTPUTS, Compositor, crop_frames, face_paste_mask, output_size

__all__ = ["CROP_MODES", "DEFAULT_EXPRESSION", "DEFAULT_MAX_SIZE", "EXPRESSIONS", "OUTPUTS", "Alignment", "Compositor", "FaceBox", "FaceLandmarks",
           "FaceTracker", "Portrait", "align_landmarks", "apply_expression", "crop_frames", "crop_image", "crop_preview", "detect_faces",
           "face_paste_mask", "find_faces", "load_image", "output_size", "prepare_portrait", "smooth_alignments"]
