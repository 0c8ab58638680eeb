"""Live mode in its own process: ``python -m llia_core live`` started for a host application.

A live avatar inside another program's process (ComfyUI) shares that process's PyTorch threads
and interpreter: a 2-frame clip took 120-134 ms there against 72 ms standalone. Started as its own
process it *is* the standalone engine (the same command line, its own threads, the generator in its
main thread) and the host only keeps a handle: the URL, a stop, and whether it still runs.

The portrait the host prepared (landmarks, expression template, alignment) travels as a pickle in a
private temporary folder that this process writes and the child reads and deletes; the model
travels as its file path. The child reads its stdin, a pipe only the parent holds, and exits when it
closes (``--exit-with-stdin``): a host that ends or is killed leaves no avatar burning CPU, on every
platform.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import LLIAError
from .levels import LEVEL_NAMES

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds llia_core/


def save_portrait_state(portrait, folder: Path) -> Path:
    path = Path(folder) / "portrait.pkl"
    with open(path, "wb") as f:
        pickle.dump(portrait, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load_portrait_state(path) -> object:
    """The portrait a parent wrote with :func:`save_portrait_state`; the file and its folder are removed."""
    path = Path(path)
    with open(path, "rb") as f:
        portrait = pickle.load(f)  # noqa: S301 - written by our own parent process in a private folder
    shutil.rmtree(path.parent, ignore_errors=True)
    return portrait


def exit_with_stdin(on_closed) -> None:
    """Call ``on_closed`` (from a daemon thread) when stdin reaches its end: the parent holding the
    other end of the pipe has closed it, ended or been killed."""
    import threading

    def wait():
        while sys.stdin.buffer.read(4096):
            pass
        on_closed()

    threading.Thread(target=wait, daemon=True, name="llia-parent-pipe").start()


class LiveProcess:
    """A ``python -m llia_core live`` child serving one model and portrait on 127.0.0.1:port."""

    def __init__(self, model_path, portrait, port: int, *, steps: int = 1, clip_frames: int = 1,
                 output: str = "full", max_size: int | None = 1024, motion=None, dtype: str = "auto",
                 threads: int | None = None, python: str = sys.executable, levels=LEVEL_NAMES):
        self.port = int(port)
        self._dir = Path(tempfile.mkdtemp(prefix="llia-live-"))  # 0700: only this user reads the portrait
        state = save_portrait_state(portrait, self._dir)
        cmd = [python, "-m", "llia_core", "live", "--model", str(model_path), "--portrait-state", str(state),
               "--port", str(self.port), "--steps", str(steps), "--clip-frames", str(clip_frames),
               "--output", output, "--max-size", str(max_size or 0), "--dtype", dtype,
               "--levels", ",".join(levels), "--exit-with-stdin"]
        if motion is not None:
            cmd += ["--mouth-amplitude", str(motion.mouth_amplitude), "--head-motion", str(motion.head_motion),
                    "--blink-rate", str(motion.blink_rate), "--seed", str(motion.seed),
                    "--teeth" if motion.teeth else "--no-teeth"]
        if threads:
            cmd += ["--threads", str(threads)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        self._log = open(self._dir / "live.log", "w+b")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                     start_new_session=os.name == "posix")  # not hit by the host's Ctrl+C

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-chars:]

    def wait_ready(self, timeout: float = 120.0) -> "LiveProcess":
        """Block until the page answers; an error with the child's last output if it died or hung."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.running:
                tail = self.log_tail()
                self.stop()
                last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
                raise LLIAError(f"the live avatar process ended before serving (exit {self.proc.returncode}): {last}")
            try:
                urllib.request.urlopen(self.url + "api/stats", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise LLIAError(f"the live avatar process did not serve {self.url} within {timeout:.0f} s; its output: "
                        f"{tail[-300:]}")

    def stats(self) -> dict:
        import json

        return json.loads(urllib.request.urlopen(self.url + "api/stats", timeout=5).read())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (terminate, then kill) and remove its folder."""
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdin:
            self.proc.stdin.close()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)
