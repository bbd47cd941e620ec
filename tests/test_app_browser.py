"""The web page in a real browser: `structvid app` started on a free localhost port, Debian's chromium driven by
Playwright (its `executable_path`, no browser download). Skipped when gradio, playwright or chromium is missing.

Set STRUCTVID_APP_SCREENSHOTS=docs/img to keep the tabs' screenshots (app.png, app_retarget.png, app_refine.png);
the retarget tab then also runs its example when the face models are bundled.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from structvid.app import handlers as h

pytest.importorskip("gradio", reason="the web page needs structvid[app] (gradio)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

# as the machine's probe starts it: headless, offline (no background connections, no first-run work)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000  # a job on 2 busy cores, generously

FIRST_FRAME = """async (sel) => {
  const v = document.querySelector(sel);
  if (v.readyState < 2) await new Promise(r => v.addEventListener('loadeddata', r, {once: true}));
  v.pause();
  const seeked = new Promise(r => v.addEventListener('seeked', r, {once: true}));
  v.currentTime = 0;
  await seeked;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { const y = (d[i] + d[i + 1] + d[i + 2]) / 3; s += y; s2 += y * y; n++; }
  const mean = s / n;
  return {src: v.src, duration: v.duration, width: c.width, height: c.height, mean: mean,
          std: Math.sqrt(s2 / n - mean * mean)};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, log path, process) of `structvid app` serving on a free localhost port."""
    log = tmp_path_factory.mktemp("app") / "server.log"
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "structvid.app.cli", "--port", str(port), "--device", "cpu"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the app did not start:\n{log.read_text()}")
            time.sleep(0.5)
    yield url, log, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(server[0])
    pg.wait_for_selector("#animate-run")
    yield pg
    pg.close()


def keep(shot: Path, name: str) -> None:
    """Copy a screenshot to $STRUCTVID_APP_SCREENSHOTS (the README's pictures) when set."""
    folder = os.environ.get("STRUCTVID_APP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(folder) / name)


def upload_photo(page, path: Path) -> None:
    page.locator("#animate-photo input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#animate-photo img")  # the upload arrived and is shown


def animate(page, previous: str | None = None) -> dict:
    """Run the Animate job and return what the browser shows of its video's first frame."""
    page.click("#animate-run")
    page.wait_for_function("([sel, old]) => { const v = document.querySelector(sel); return v && v.src && "
                           "v.src !== old; }", arg=["#animate-video video", previous or ""], timeout=TIMEOUT_MS)
    return page.evaluate(FIRST_FRAME, "#animate-video video")


def served_file(src: str) -> Path:
    """The server's file behind a gradio file URL (same machine)."""
    return Path(re.search(r"/file=(.*)$", urllib.request.unquote(src)).group(1))


def test_animate_the_bundled_image(page, tmp_path):
    upload_photo(page, h.EXAMPLE_IMAGE)
    shown = animate(page)
    assert shown["duration"] == pytest.approx(48 / 12, abs=0.1)  # the example's 48 poses at 12 frames/s
    assert (shown["width"], shown["height"]) == (64, 64)
    with av.open(str(served_file(shown["src"]))) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    assert shown["std"] > 20  # a picture, not a blank frame
    assert abs(shown["mean"] - first.mean()) < 3  # and the first frame of the file the job wrote
    page.wait_for_selector("#animate-panel video")
    assert "48 frames" in page.inner_text("#animate-summary")
    page.screenshot(path=tmp_path / "animate.png", full_page=True)
    keep(tmp_path / "animate.png", "app.png")


def test_text_file_as_photo_shows_the_clis_line_then_a_job_succeeds(page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image\n")
    page.locator("#animate-photo input[type=file]").set_input_files(str(notes))
    page.wait_for_timeout(500)
    page.click("#animate-run")
    line = "error: notes.png: is not a readable image (unknown format or corrupt)"
    page.get_by_text(line).wait_for()  # the same line `structvid generate --image notes.png` prints
    page.screenshot(path=tmp_path / "error.png")
    upload_photo(page, h.EXAMPLE_IMAGE)
    shown = animate(page)
    assert shown["std"] > 20 and shown["duration"] == pytest.approx(4.0, abs=0.1)


def test_refine_example_and_the_other_tabs(page, tmp_path):
    page.get_by_role("tab", name="Refine a video").click()
    page.get_by_text("the bundled G_M's coarse video of the puppet, and its poses").click()
    page.wait_for_selector("#refine-video-in video")
    page.click("#refine-run")
    page.wait_for_selector("#refine-panel video[src]")
    shown = page.evaluate(FIRST_FRAME, "#refine-panel video")
    assert shown["width"] == 3 * 256 + 2 * 2 and shown["std"] > 20  # coarse | refined | mask, not blank
    page.screenshot(path=tmp_path / "refine.png", full_page=True)
    keep(tmp_path / "refine.png", "app_refine.png")
    page.get_by_role("tab", name="Retarget a face").click()
    page.wait_for_selector("#retarget-run")
    if os.environ.get("STRUCTVID_APP_SCREENSHOTS") and h.FACE_DEMO_DIR.is_dir() and h.example_faces():
        # for the README's picture, the face example too (needs the bundled face models and dlib / eos)
        page.get_by_text("LivePortrait's s42.jpg and d0.mp4 (MIT)").click()
        page.wait_for_selector("#retarget-reference video")
        page.click("#retarget-run")
        page.wait_for_selector("#retarget-panel video[src]", timeout=4 * TIMEOUT_MS)
        page.evaluate(FIRST_FRAME, "#retarget-panel video")
    page.screenshot(path=tmp_path / "retarget.png", full_page=True)
    keep(tmp_path / "retarget.png", "app_retarget.png")


def camera_file(image: Path, out: Path) -> Path:
    """A few frames of `image` as a Y4M file, what chromium's fake camera (--use-file-for-fake-video-capture) plays."""
    from PIL import Image

    frame = np.asarray(Image.open(image).convert("RGB").resize((640, 480)))
    with av.open(str(out), "w", format="yuv4mpegpipe") as c:
        stream = c.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for _ in range(5):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode(None))
    return out


def test_webcam_snapshot_is_retargeted(server, browser, shared_data, tmp_path):
    """The portrait's webcam source: chromium's fake camera shows s42.jpg, the page's capture button takes the
    snapshot (sent inline as a data: URL), and the retarget job animates it with d0.mp4."""
    pytest.importorskip("dlib", reason="retargeting needs structvid[faces]")
    faces = shared_data / "faces"
    if not h.FACE_DEMO_DIR.is_dir():
        pytest.skip("the bundled face models are missing")
    camera = camera_file(faces / "s42.jpg", tmp_path / "camera.y4m")
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-video-capture={camera}"]
    b = browser.browser_type.launch(executable_path=CHROMIUM, args=args)  # the fixture's Playwright, another browser
    try:
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server[0])
        page.get_by_role("tab", name="Retarget a face").click()
        page.click("#retarget-portrait button[aria-label='Capture from camera']")
        page.get_by_text("Click to Access Webcam").click()
        page.click("#retarget-portrait button[aria-label='capture photo']")
        page.wait_for_selector("#retarget-portrait img")  # the snapshot is the portrait now
        page.locator("#retarget-reference input[type=file]").set_input_files(str(faces / "d0.mp4"))
        page.wait_for_selector("#retarget-reference video")
        page.click("#retarget-run")
        page.wait_for_selector("#retarget-video video[src]", timeout=4 * TIMEOUT_MS)
        shown = page.evaluate(FIRST_FRAME, "#retarget-video video")
        summary = page.inner_text("#retarget-summary")
    finally:
        b.close()
    with av.open(str(faces / "d0.mp4")) as c:
        seconds = c.streams.video[0].frames / float(c.streams.video[0].average_rate)
    assert shown["duration"] == pytest.approx(seconds, abs=0.1) and shown["std"] > 20  # a whole, non-blank video
    assert "0 frames without a face" in summary


def test_stopping_the_server_removes_its_files(server, browser):
    url, log, proc = server
    pg = browser.new_page()
    pg.goto(url)
    pg.wait_for_selector("#animate-run")
    upload_photo(pg, h.EXAMPLE_IMAGE)  # an upload, kept only in the server's folder
    pg.close()
    folder = Path(re.search(r"files: (\S+)", log.read_text()).group(1))
    assert folder.is_dir() and any(folder.rglob("image.png"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not folder.exists()
