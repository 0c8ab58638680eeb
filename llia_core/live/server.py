"""The live web server: a page that shows the avatar, and an HTTP API that feeds it audio.

API (all on 127.0.0.1 by default; audio bodies are WAV files, or raw little-endian PCM with
``?format=f32|s16&sample_rate=N``; mono):

- ``GET /``: the page (video canvas, state, latency; "Start audio" plays the avatar's voice and
  "Use microphone" streams the user's mic over the WebSocket).
- ``POST /api/avatar-audio``: the avatar's voice (e.g. from a TTS), chunk by chunk. Returns
  ``{"start": media seconds, "duration": s, "delay_ms": ...}``.
- ``POST /api/user-audio``: the user's side (a stand-in for the microphone). Returns ``{"speech": bool}``.
- ``GET /api/stats``: frames, drops, latency medians.
- ``GET /api/motion``, ``POST /api/motion``: the motion controls, read or changed from the next clip
  on: JSON ``{"mouth_amplitude": 0..2, "head_motion": 0..2, "blink_rate": blinks per minute}``
  (any subset). Returns the controls now in use.
- ``GET /ws``: WebSocket for viewers. Server -> page: JSON ``hello``, ``audio`` (pts, 16 kHz int16
  base64), ``stats``; frames as binary messages (:func:`frame_message`: a 4-byte big-endian length,
  that many bytes of JSON ``{"type": "frame", index, pts, state}``, then the JPEG), which the page
  decodes off its main thread without keeping every frame as a data-URL string. Page -> server:
  binary 16 kHz int16 mic PCM, JSON ``{"type": "shown", "index", "lag_ms"}`` reports (which date
  when each voice chunk's face was really shown: ``latency_page_ms_*`` in the stats), and
  ``{"type": "ping", "t"}``, answered with ``{"type": "pong", "t", "media_now"}`` to sync its clock.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import AudioError, LLIAError
from .session import RATE, LiveAvatar, LiveFrame

PAGE = Path(__file__).with_name("page.html")


def decode_audio_body(body: bytes, query) -> tuple[np.ndarray, int]:
    """A request body -> (mono float32 samples, sample rate); WAV or raw PCM."""
    if not body:
        raise AudioError("the request has no audio; send a WAV file or raw PCM in the body")
    if body[:4] == b"RIFF":
        import soundfile as sf

        try:
            wave, sr = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - report as a clear input error
            raise AudioError(f"the WAV body could not be read ({exc}); send a valid WAV file") from None
        return wave.mean(axis=1), int(sr)
    fmt = query.get("format", "s16")
    try:
        sr = int(query.get("sample_rate", RATE))
    except ValueError:
        raise AudioError("sample_rate must be an integer number of Hz, e.g. ?sample_rate=16000") from None
    if not 4000 <= sr <= 192000:
        raise AudioError(f"sample_rate {sr} Hz is outside 4000-192000; send the rate the PCM was recorded at")
    if fmt == "f32":
        if len(body) % 4:
            raise AudioError("f32 PCM must be a whole number of 4-byte samples")
        return np.frombuffer(body, "<f4").astype(np.float32), sr
    if fmt == "s16":
        if len(body) % 2:
            raise AudioError("s16 PCM must be a whole number of 2-byte samples")
        return np.frombuffer(body, "<i2").astype(np.float32) / 32768.0, sr
    raise AudioError(f"unknown format '{fmt}'; use format=s16 or format=f32 (or send a WAV file)")


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def frame_message(meta: dict, jpeg: bytes) -> bytes:
    """One frame for the WebSocket: 4-byte big-endian header length, the JSON header, the JPEG."""
    header = json.dumps(meta).encode()
    return len(header).to_bytes(4, "big") + header + jpeg


def parse_message(data: str | bytes) -> dict:
    """A WebSocket message as a dict, for clients written in Python: JSON text as it is; a binary
    frame (:func:`frame_message`) as its header with the JPEG bytes under ``"jpeg"``."""
    if isinstance(data, str):
        return json.loads(data)
    n = int.from_bytes(data[:4], "big")
    return json.loads(data[4:4 + n]) | {"jpeg": data[4 + n:]}


class LiveServer:
    """aiohttp application around one :class:`LiveAvatar`; ``start()`` runs it on its own thread.

    ``pause_unwatched``: the avatar generates only while at least one page is connected.
    """

    def __init__(self, avatar: LiveAvatar, host: str = "127.0.0.1", port: int = 8188, pause_unwatched: bool = True):
        self.avatar, self.host, self.port = avatar, host, port
        avatar.pause_unwatched = pause_unwatched
        self.viewers: set = set()
        self.shown_reports: list[dict] = []
        self.shown_frames: deque = deque(maxlen=200000)  # indices of the frames pages reported showing
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        avatar.on_frame = self._frame_from_thread

    # generator thread -> event loop
    def _frame_from_thread(self, frame: LiveFrame) -> None:
        if self.loop is None or not self.viewers:
            return
        msg = frame_message({"type": "frame", "index": frame.index, "pts": frame.pts,
                             "state": LiveAvatar.state_name(frame.state)}, _jpeg(frame.image))
        self.loop.call_soon_threadsafe(self._broadcast, msg)

    def _broadcast(self, msg: str | bytes) -> None:
        for ws in list(self.viewers):
            if not ws.closed:
                asyncio.ensure_future(ws.send_bytes(msg) if isinstance(msg, bytes) else ws.send_str(msg))

    # handlers
    async def page(self, request):
        from aiohttp import web

        return web.Response(text=PAGE.read_text(), content_type="text/html")

    async def _audio(self, request):
        body = await request.read()
        return decode_audio_body(body, request.query)

    async def avatar_audio(self, request):
        from aiohttp import web

        try:
            wave, sr = await self._audio(request)
            wave = self.avatar.to_16k(wave, sr)
            event = self.avatar.push_avatar_audio(wave, RATE)
        except LLIAError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        pcm = (wave * 32767).astype("<i2").tobytes()
        self._broadcast(json.dumps({"type": "audio", "pts": event.start, "sample_rate": RATE,
                                    "pcm": base64.b64encode(pcm).decode()}))
        reply = {"start": event.start, "duration": event.duration, "delay_ms": round(1000 * self.avatar.audio_delay, 1)}
        if self.avatar.paused:  # scheduled on the clock all the same; frames resume when a page connects
            reply["note"] = "no page is connected, so no frames are being generated; open the page to see the avatar"
        return web.json_response(reply)

    async def _push_user(self, wave, sample_rate: int) -> bool:
        """The check waits for the generator's next gap between clips: off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.avatar.push_user_audio, wave, sample_rate)

    async def user_audio(self, request):
        from aiohttp import web

        try:
            wave, sr = await self._audio(request)
            speech = await self._push_user(wave, sr)
        except LLIAError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"speech": speech})

    def stats(self) -> dict:
        out = self.avatar.stats.summary()
        out["viewers"] = len(self.viewers)
        out["paused"] = bool(self.avatar.paused)
        out.update(self.avatar.governor.summary())  # the level it runs at and the share of frames at each
        out["lead_ms"] = round(1000 * self.avatar.lead, 1)
        out["audio_delay_ms"] = round(1000 * self.avatar.audio_delay, 1)
        out["shown_reports"] = len(self.shown_reports)
        if self.shown_reports:
            out["browser_lag_ms_median"] = float(np.median([r["lag_ms"] for r in self.shown_reports[-500:]]))
        return out

    def _motion_reply(self) -> dict:
        m = self.avatar.motion
        return {"mouth_amplitude": m.mouth_amplitude, "head_motion": m.head_motion, "blink_rate": m.blink_rate}

    async def motion(self, request):
        """GET: the motion controls; POST a JSON subset of them to change them."""
        import dataclasses

        from aiohttp import web

        if request.method == "POST":
            try:
                changes = json.loads(await request.read() or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError
            except ValueError:
                return web.json_response({"error": "send a JSON object such as {\"head_motion\": 1}"}, status=400)
            names = set(self._motion_reply())
            unknown = sorted(set(changes) - names)
            if unknown:
                return web.json_response({"error": f"unknown control(s) {', '.join(unknown)}; use {', '.join(sorted(names))}"},
                                         status=400)
            try:
                motion = dataclasses.replace(self.avatar.motion, **{k: float(v) for k, v in changes.items()})
                self.avatar.set_motion(motion)
            except (LLIAError, TypeError, ValueError) as exc:
                return web.json_response({"error": str(exc) if isinstance(exc, LLIAError) else
                                          "controls are numbers, e.g. {\"blink_rate\": 15}"}, status=400)
        return web.json_response(self._motion_reply())

    async def stats_handler(self, request):
        from aiohttp import web

        return web.json_response(self.stats())

    async def websocket(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        self.viewers.add(ws)
        self.avatar.viewer_joined()
        await ws.send_str(json.dumps({"type": "hello", "media_now": self.avatar.now(), "fps": self.avatar.fps,
                                      "delay_ms": 1000 * self.avatar.audio_delay}))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:  # the page's microphone, 16 kHz int16
                    wave = np.frombuffer(msg.data[: len(msg.data) // 2 * 2], "<i2").astype(np.float32) / 32768.0
                    if wave.size:
                        await self._push_user(wave, RATE)
                elif msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "shown":
                        self.shown_reports.append(data)
                        del self.shown_reports[:-5000]
                        self.shown_frames.append(data.get("index"))
                        try:
                            self.avatar.page_showed(int(data["index"]), float(data.get("lag_ms", 0.0)))
                        except (KeyError, TypeError, ValueError):
                            pass  # a malformed report from a foreign client: ignore it
                    elif data.get("type") == "ping":  # the page syncing its media clock
                        await ws.send_str(json.dumps({"type": "pong", "t": data.get("t"),
                                                      "media_now": self.avatar.now()}))
                    elif data.get("type") == "stats":
                        await ws.send_str(json.dumps({"type": "stats", **self.stats()}))
        finally:
            self.viewers.discard(ws)
            self.avatar.viewer_left()
        return ws

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 << 20)
        app.add_routes([web.get("/", self.page), web.post("/api/avatar-audio", self.avatar_audio),
                        web.post("/api/user-audio", self.user_audio), web.get("/api/stats", self.stats_handler),
                        web.get("/api/motion", self.motion), web.post("/api/motion", self.motion),
                        web.get("/ws", self.websocket)])
        return app

    async def _serve(self) -> None:
        from aiohttp import web

        self.loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._ready.set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, threads: int | None = None, generator: bool = True) -> "LiveServer":
        """Serve on a background thread; also start the avatar's generator thread unless ``generator``
        is False (then call ``avatar.run()`` from the main thread, which is faster)."""
        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="llia-live-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise LLIAError(f"the live server could not start on {self.host}:{self.port}; pick another --port")
        if generator:
            self.avatar.start(threads)
        return self

    def stop(self) -> None:
        self.avatar.stop()
        if self.loop is not None:
            async def shutdown():
                for ws in list(self.viewers):
                    await ws.close()
                await self._runner.cleanup()
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
