"""User-facing error types.

Every problem a user can cause (bad file, wrong checkpoint, bad timeline...) is raised as a
subclass of :class:`LLIAError` whose message is one sentence naming the problem and the fix.
Anything else escaping the engine is a bug.
"""


class LLIAError(ValueError):
    """Base class: a problem with the user's input, with a message that says how to fix it."""


class AudioError(LLIAError):
    """The audio could not be read or is unusable (corrupt, empty, shorter than one frame...)."""


class PortraitError(LLIAError):
    """The portrait image could not be read, or no usable face was found in it."""


class CheckpointError(LLIAError):
    """A model file is missing, truncated, of another config, or cannot be found/downloaded."""


class TimelineError(LLIAError):
    """A state timeline string is malformed, overlaps, has gaps or runs past the audio."""


class VideoError(LLIAError):
    """A video could not be written or read."""
