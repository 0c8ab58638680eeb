"""A screenshot of a workflow in a real ComfyUI, run there with the bundled portrait, speech and model.

    python scripts/comfyui_screenshot.py --comfyui /path/to/ComfyUI [--url http://127.0.0.1:8188/]
        [--workflow workflows/llia_offline.json] [--out docs/comfyui_offline_workflow.png]

ComfyUI must be running (``python main.py --cpu``) with this pack in ``custom_nodes/``. The script copies
the bundled portrait and speech into ComfyUI's ``input/`` folder, opens ComfyUI in headless Chromium
(Debian's ``chromium``, driven over the DevTools protocol with aiohttp: nothing else to install),
loads the workflow, queues it from the page, waits until it has run, fits the graph to the window and
saves the picture. Retake it after changing the nodes or the model.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def _cdp(ws_url: str):
    import aiohttp

    session = aiohttp.ClientSession()
    ws = await session.ws_connect(ws_url, max_msg_size=0)
    counter = [0]

    async def call(method: str, **params):
        counter[0] += 1
        await ws.send_json({"id": counter[0], "method": method, "params": params})
        while True:
            msg = await ws.receive_json(timeout=120)
            if msg.get("id") == counter[0]:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def evaluate(expr: str, await_promise: bool = False):
        out = await call("Runtime.evaluate", expression=expr, awaitPromise=await_promise, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails'].get('text')}: {expr[:80]}")
        return out.get("result", {}).get("value")

    async def close():
        await ws.close()
        await session.close()

    return call, evaluate, close


async def shoot(url: str, workflow: dict, out: Path, width: int, height: int, timeout: float) -> dict:
    import aiohttp

    port = 9300
    profile = tempfile.mkdtemp(prefix="llia-chromium-")
    browser = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", f"--window-size={width},{height}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as s:
            # a first visit opens ComfyUI's template browser over the canvas: mark the tour as done
            for setting, value in (("Comfy.TutorialCompleted", True), ("Comfy.Minimap.Visible", False)):
                async with s.post(url.rstrip("/") + f"/settings/{setting}", json=value):
                    pass
            for _ in range(100):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/json") as r:
                        pages = [p for p in await r.json() if p.get("type") == "page"]
                    if pages:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        call, evaluate, close = await _cdp(pages[0]["webSocketDebuggerUrl"])
        try:
            await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=False)
            await call("Page.enable")
            await call("Page.navigate", url=url)
            deadline = time.time() + 120
            while not await evaluate("!!(window.app && window.app.graph && window.app.canvas)"):
                if time.time() > deadline:
                    raise RuntimeError(f"ComfyUI's page at {url} did not load")
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)
            await evaluate("document.querySelectorAll('.p-dialog-close-button').forEach(b => b.click()), true")
            await evaluate(f"window.app.loadGraphData({json.dumps(workflow)})", await_promise=True)
            await asyncio.sleep(2)
            prompt = await evaluate("window.app.queuePrompt(0).then(() => true)", await_promise=True)
            t0 = time.time()
            while time.time() - t0 < timeout:  # ComfyUI's own queue says when the run is over
                async with aiohttp.ClientSession() as s:
                    async with s.get(url.rstrip("/") + "/queue") as r:
                        q = await r.json()
                if prompt and not q["queue_running"] and not q["queue_pending"]:
                    break
                await asyncio.sleep(1)
            ran = time.time() - t0
            await asyncio.sleep(3)  # the previews arrive over the page's WebSocket
            await evaluate("document.querySelectorAll('.p-dialog-close-button, .p-toast-close-button')"
                           ".forEach(b => b.click()), true")
            await evaluate("(window.app.extensionManager?.command?.execute('Comfy.Canvas.FitView'), true)",
                           await_promise=False)
            await asyncio.sleep(1)
            shot = await call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            return {"queued": bool(prompt), "run_seconds": round(ran, 1)}
        finally:
            await close()
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", required=True, help="the ComfyUI folder (its input/ gets the bundled portrait and speech)")
    p.add_argument("--url", default="http://127.0.0.1:8188/")
    p.add_argument("--workflow", default=str(ROOT / "workflows" / "llia_offline.json"))
    p.add_argument("--out", default=str(ROOT / "docs" / "comfyui_offline_workflow.png"))
    p.add_argument("--size", default="2400x1250", help="window, WIDTHxHEIGHT (wide enough that the fitted graph "
                   "is drawn at full detail: ComfyUI hides node text below about 60% zoom)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the workflow to run")
    a = p.parse_args(argv)
    if shutil.which("chromium") is None:
        raise SystemExit("needs Debian's chromium (apt install chromium)")
    inputs = Path(a.comfyui) / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for name in ("portrait.png", "speech.wav"):
        shutil.copy(ROOT / "llia_core" / "assets" / name, inputs / name)
    w, h = (int(v) for v in a.size.split("x"))
    result = asyncio.run(shoot(a.url, json.loads(Path(a.workflow).read_text()), Path(a.out), w, h, a.timeout))
    print(f"wrote {a.out} ({result})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
