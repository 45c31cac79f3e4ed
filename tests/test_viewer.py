"""Results in a real viewer (issue 16, item 5): the node's outputs for a phantom ECV study, in Orthanc with
its Web Viewer plugin (Debian orthanc-webviewer), opened in headless Chromium (Debian chromium and
chromium-driver, driven by Selenium): Orthanc Explorer lists every series by its description, and the
viewer draws the study summary and the ECV map's grayscale view. The canvas pixels are checked (the page's
overlays sit above them), and a screenshot of each page goes to demo-output/viewer/ for a person to look at.
Float Parametric Maps are not drawn by this viewer (Orthanc 1.10 decodes integer pixels only): the viewer
images are what a viewer like it shows."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_out.phantom_studies import write_ecv_study
from node.config import offline_config
from node.demo.local_pacs import Orthanc
from node.process.offline import process_folder
from tests.conftest import require_tool

pytestmark = pytest.mark.integration

WEB_VIEWER_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancWebViewer.so")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "demo-output" / "viewer"
# Chromium as root on a machine without a display or network (the Debian package's own sandbox needs a user)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--window-size=1280,1000")
# the image once cornerstone has drawn it on #dicomImage's canvas (over 2 % of it lit), as a PNG data URL; an
# alert() of the viewer (an image it cannot decode) is returned at once instead
RENDERED = """
const alerts = window.__alerts || [];
if (alerts.length) return {error: alerts[0]};
const element = document.getElementById('dicomImage');
if (!window.cornerstone || !element) return null;
let enabled; try { enabled = cornerstone.getEnabledElement(element); } catch (e) { return null; }
if (!enabled || !enabled.image || !enabled.canvas) return null;
const c = enabled.canvas, d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
return lit > 0.02 * c.width * c.height ? {png: c.toDataURL('image/png'), color: enabled.image.color} : null;
"""


@pytest.fixture(scope="module")
def browser():
    for path in (WEB_VIEWER_PLUGIN, CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make test`, which installs orthanc-webviewer, chromium and "
                        "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pacs_with_results(tmp_path_factory):
    """A web-viewer Orthanc holding the phantom study and everything the node made of it."""
    require_tool("Orthanc")
    root = tmp_path_factory.mktemp("viewer")
    _, _, files = write_ecv_study(root / "in")
    report = process_folder(root / "in", root / "out", offline_config())
    assert all(j["state"] == "done" for j in report["jobs"]), report["jobs"]
    outputs = [root / "out" / name for job in report["jobs"] for name in job["outputs"]]
    pacs = Orthanc(root / "orthanc", plugins=[WEB_VIEWER_PLUGIN],
                   extra={"WebViewer": {"CachePath": str(root / "webviewer-cache"), "Threads": 1}}).start()
    try:
        assert "web-viewer" in pacs.get("/plugins")
        series = {}
        for path in [*files, *outputs]:
            answer = pacs.post("/instances", path.read_bytes())
            description = str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesDescription", ""))
            series[description] = (answer["ParentStudy"], answer["ParentSeries"])
        yield pacs, series
    finally:
        pacs.stop()


def _show(driver, pacs, series_id: str, description: str, name: str) -> np.ndarray:
    """Open a series in the web viewer, wait for its image, save a screenshot; the drawn canvas as RGB."""
    driver.get(f"{pacs.url}/web-viewer/app/viewer.html?series={series_id}")
    driver.execute_script("window.__alerts = []; window.alert = m => window.__alerts.push(String(m));")
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 30).until(
        lambda d: description in d.execute_script("return (document.getElementById('topright') || {}).innerText || ''"))
    drawn = WebDriverWait(driver, 30).until(lambda d: d.execute_script(RENDERED))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    assert "error" not in drawn, drawn
    png = base64.b64decode(drawn["png"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_orthanc_explorer_lists_every_series_by_its_description(browser, pacs_with_results):
    pacs, series = pacs_with_results
    study = next(iter(series.values()))[0]
    browser.get(f"{pacs.url}/app/explorer.html#study?uuid={study}")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#list-series li h3")) >= len(series))
    listed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#list-series li h3")]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "explorer-study.png"))
    assert sorted(listed) == sorted(series)
    assert {"CMR summary (cmr-node)", "ECV map (cmr-node)", "ECV map (cmr-node) [view]",
            "ECV AHA segments (cmr-node)", "ECV report (cmr-node)"} <= set(listed)


def test_the_viewer_draws_the_study_summary(browser, pacs_with_results):
    pacs, series = pacs_with_results
    pixels = _show(browser, pacs, series["CMR summary (cmr-node)"][1], "CMR summary (cmr-node)", "summary")
    # the page in colour: viridis bullseye segments and the amber disclaimer, on black
    colourful = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).max(axis=-1) > 40
    assert colourful.mean() > 0.02
    amber = (pixels[..., 0] > 200) & (pixels[..., 1] > 150) & (pixels[..., 2] < 80)
    assert amber.any()


def test_the_viewer_draws_the_ecv_view_as_the_map_shows_it(browser, pacs_with_results):
    pacs, series = pacs_with_results
    pixels = _show(browser, pacs, series["ECV map (cmr-node) [view]"][1], "ECV map (cmr-node) [view]", "ecv-view")
    grey = pixels[..., 1]
    assert np.abs(np.diff(pixels, axis=-1)).max() < 12                  # grayscale
    # blood (ECV 1 - Hct = 58 %) brighter than the myocardium (25 %) brighter than air: the middle of the
    # image is the LV cavity, whose grey must beat the image's median (mostly air and tissue)
    h, w = grey.shape
    assert grey[h // 2 - 5:h // 2 + 5, int(w * 0.52) - 5:int(w * 0.52) + 5].mean() > np.median(grey) + 40
    assert json.dumps(sorted(p.name for p in SCREENSHOTS.glob("*.png")))
