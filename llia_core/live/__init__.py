"""Live two-way avatar: ``session`` is the real-time engine, ``server`` the page and audio API."""

from .session import ChunkEvent, LiveAvatar, LiveFrame
from .server import LiveServer, decode_audio_body, parse_message

__all__ = ["ChunkEvent", "LiveAvatar", "LiveFrame", "LiveServer", "decode_audio_body", "parse_message"]
