"""The demo page in a real headless browser (Debian chromium driven by playwright) against
a live Serve deployment: pick a sample, predict, download the PLY, simulate and watch the
video play; upload files; see a readable error for a bad file."""
import os
import re
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed "
                                "(scripts/install_browser.sh installs Debian chromium)")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sync_api = pytest.importorskip("playwright.sync_api")
ray = pytest.importorskip("ray")
from ray import serve  # noqa: E402
from tiny_model import TINY  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "serving" / "static" / "samples"


@pytest.fixture(scope="module")
def url():
    from physgm.config import build_config
    from serving.deploy import start
    from serving.model_source import ModelSource

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = build_config({"model": TINY, "serve": {"port": port, "sim": {"n_frames": 12},
                                                 "video_size": 64, "max_particles": 1500}})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start(cfg, ModelSource("random"))
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture()
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.errors = []
            page.on("pageerror", lambda err: page.errors.append(str(err)))
            page.goto(url + "/")
            yield page
        finally:
            browser.close()


PLAYING = """() => { const v = document.getElementById('video');
  return v.readyState >= 2 && v.currentTime > 0 && !v.paused && v.videoWidth > 0; }"""


def test_sample_predict_download_and_simulate(page):
    expect = sync_api.expect
    expect(page.locator("#model-version")).to_have_text(re.compile("random-init"))
    page.click("#sample-jelly_cube")
    expect(page.locator("#thumbs img")).to_have_count(2)
    page.click("#predict")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    expect(page.locator("#probs .bar")).to_have_count(5)
    assert page.locator("#material-name").inner_text() in {
        "jelly", "metal", "plasticine", "sand", "snow"}
    assert page.locator("#params tbody tr").count() >= 3            # E, nu, density, ...
    assert re.match(r"^\d", page.locator("#params tbody tr").first.locator("td").nth(1)
                    .inner_text())
    expect(page.locator("#ply-link")).not_to_have_class(re.compile("disabled"), timeout=60_000)
    with page.expect_download() as dl:
        page.click("#ply-link")
    ply = Path(dl.value.path()).read_bytes()
    assert ply.startswith(b"ply\n")

    page.select_option("#override-material", "jelly")
    page.fill("#override-E", "300000")
    page.click("#simulate")
    expect(page.locator("#video")).to_be_visible(timeout=120_000)
    page.wait_for_function(PLAYING, timeout=30_000)
    assert page.evaluate("document.getElementById('video').videoWidth") == 64
    assert "jelly" in page.locator("#sim-info").inner_text()
    assert "E=3.00e+5" in page.locator("#sim-info").inner_text()
    assert not page.errors, page.errors


def test_upload_and_readable_error(page, tmp_path):
    expect = sync_api.expect
    page.set_input_files("#files", [str(SAMPLES / "snow_ball_v0.png"),
                                    str(SAMPLES / "snow_ball_v1.png")])
    expect(page.locator("#thumbs img")).to_have_count(2)
    page.click("#predict")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.set_input_files("#files", [str(bad)])
    page.click("#predict")
    expect(page.locator("#error")).to_be_visible(timeout=30_000)
    expect(page.locator("#error")).to_contain_text("415")
    expect(page.locator("#error")).to_contain_text("PNG or JPEG")
    assert not page.errors, page.errors


def test_compare_without_and_with_dpo(page, tmp_path):
    """The same views through the pretrained and the DPO model (the random-init server's
    stand-ins, seeds 0 and 1): both probability bars, parameter tables and videos."""
    expect = sync_api.expect
    expect(page.locator("#compare")).to_be_visible(timeout=30_000)   # both ids are served
    page.click("#sample-jelly_cube")
    expect(page.locator("#thumbs img")).to_have_count(2)
    page.click("#compare-run")
    for mid in ("pretrained", "dpo"):
        col = page.locator(f"#compare-{mid}")
        expect(col.locator(".probs .bar")).to_have_count(5, timeout=60_000)
        assert col.locator(".params tbody tr").count() >= 3
        expect(col.locator(".video")).to_be_visible(timeout=180_000)
        expect(col.locator(".sim-info")).to_contain_text("particles", timeout=30_000)
    page.wait_for_function("""() => [...document.querySelectorAll('#compare video')].every(
        v => v.readyState >= 2 && v.videoWidth > 0)""", timeout=30_000)
    versions = page.locator("#compare .version").all_inner_texts()
    assert versions[0].startswith("random-init-seed0") and versions[1].startswith(
        "random-init-seed1")
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert not page.errors, page.errors


def test_simulate_an_own_3dgs_scene(page, tmp_path):
    from uploads import ball, ply_bytes

    expect = sync_api.expect
    scene = tmp_path / "scene.ply"
    scene.write_bytes(ply_bytes(ball(800, radius=25.0), 3))
    expect(page.locator("#video")).to_be_hidden()
    page.set_input_files("#ply-file", str(scene))
    page.select_option("#override-material", "snow")
    page.click("#simulate")
    expect(page.locator("#video")).to_be_visible(timeout=120_000)
    page.wait_for_function(PLAYING, timeout=30_000)
    expect(page.locator("#sim-info")).to_contain_text("material=snow")
    assert not page.errors, page.errors
