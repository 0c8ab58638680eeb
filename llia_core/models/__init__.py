"""Networks of LLIA (one module per network; ``llia_model`` puts them together)."""

from .audio_encoder import AudioEncoder
from .autoencoder import KLAutoencoder, PatchAutoencoder, build_autoencoder
from .denoiser import LLIADenoiser
from .face_locator import FaceLocator
from .llia_model import LLIAModel, ReferenceState
from .reference_net import ReferenceNet

__all__ = [
    "AudioEncoder", "FaceLocator", "KLAutoencoder", "LLIADenoiser", "LLIAModel", "PatchAutoencoder",
    "ReferenceNet", "ReferenceState", "build_autoencoder",
]
