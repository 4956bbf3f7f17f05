"""The web page of `lxmert serve` in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (never one selenium-manager downloads), against a live server on the tiny checkpoints.

Screenshots at desktop and phone sizes go to $LXMERT_TEST_ARTIFACTS (default tests/artifacts/, gitignored).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import IMAGES, free_port, http_status, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and its driver: apt-get install chromium chromium-driver",
)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LXMERT_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
IMAGE = IMAGES / "000456.jpg"
QUESTION = "What is in the picture?"
DESKTOP = (1280, 900)
PHONE = (390, 844)
READY_TIMEOUT_S = 180  # the child imports torch and loads both tiny models
WAIT_S = 60


@pytest.fixture(scope="module")
def server(vqa_dir, detector_dir, tmp_path_factory):
    """A live `lxmert serve` on 127.0.0.1 and a free port; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-c", "from service.cli import main; main()", "serve"]
    command += ["--model", str(vqa_dir), "--detector", str(detector_dir), "--device", "cpu", "--port", str(port)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_status(f"{url}/readyz") == 200, process, log_path, READY_TIMEOUT_S)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium with its console log kept (goog:loggingPrefs)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # selenium-manager must not fetch a driver or a browser
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    use_desktop(driver)
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.documentElement.dataset.info"))
    assert driver.execute_script("return document.documentElement.dataset.info") == "loaded"


def use_desktop(driver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    driver.set_window_size(*DESKTOP)


def use_phone(driver, scheme: str = "light") -> None:
    """A phone's viewport (no layout scrollbar, the viewport meta honoured) and its color scheme."""
    width, height = PHONE
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def wait(driver, condition, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout).until(condition)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    """The whole page, not just the viewport (Chrome DevTools' captureBeyondViewport)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = driver.execute_script("return [window.innerWidth, document.documentElement.scrollHeight]")
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", options)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def ask_api(url: str, image: Path, questions: list[str]) -> dict:
    """POST /v1/vqa as the page does (multipart, top_k=5, explain=true), with urllib."""
    boundary = uuid.uuid4().hex
    fields = [("question", q) for q in questions] + [("top_k", "5"), ("explain", "true")]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{image.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body += image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/v1/vqa", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.load(response)


# How many canvas pixels differ from the photo alone drawn at the same size: what the page drew on it.
# The photo comes as base64 (arguments[0]); the answer goes to the callback (arguments[1]).
CHANGED_PIXELS_JS = """
const [photoBase64, done] = arguments;
const bytes = Uint8Array.from(atob(photoBase64), (c) => c.charCodeAt(0));
createImageBitmap(new Blob([bytes])).then((bitmap) => {
  const canvas = document.getElementById("canvas");
  const drawn = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const plain = document.createElement("canvas");
  plain.width = canvas.width;
  plain.height = canvas.height;
  const context = plain.getContext("2d");
  context.drawImage(bitmap, 0, 0, plain.width, plain.height);
  const photo = context.getImageData(0, 0, plain.width, plain.height).data;
  let changed = 0;
  for (let i = 0; i < drawn.length; i += 4) {
    const difference = Math.abs(drawn[i] - photo[i]) + Math.abs(drawn[i + 1] - photo[i + 1])
      + Math.abs(drawn[i + 2] - photo[i + 2]);
    if (difference > 30) changed += 1;
  }
  done([changed, drawn.length / 4]);
});
"""


def changed_pixels(driver, image: Path) -> tuple[int, int]:
    return driver.execute_async_script(CHANGED_PIXELS_JS, base64.b64encode(image.read_bytes()).decode())


def shown_answers(driver) -> list[list[tuple[str, float]]]:
    """Per question block: (answer, score in percent) as the page shows them."""
    shown = []
    for block in driver.find_elements(By.CSS_SELECTOR, "#answers .question"):
        items = block.find_elements(By.CSS_SELECTOR, ".answer-list li")
        texts = [
            (i.find_element(By.CLASS_NAME, "answer").text, i.find_element(By.CLASS_NAME, "score").text) for i in items
        ]
        shown.append([(answer, float(score.removesuffix("%"))) for answer, score in texts])
    return shown


def test_page_answers_and_draws_regions_and_attention(server, browser):
    open_page(browser, server)

    # Keyboard: Tab from the top of the page reaches the drop zone, the questions, then Ask.
    browser.execute_script("document.activeElement.blur()")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    visited = []
    for _ in range(10):
        visited.append(browser.execute_script("return document.activeElement.id"))
        if visited[-1] == "ask":
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert visited[-1] == "ask", f"Tab order {visited} never reached the Ask button"
    assert visited.index("drop-zone") < visited.index("questions") < visited.index("ask")

    browser.find_element(By.ID, "image-input").send_keys(str(IMAGE))
    wait(browser, lambda d: d.find_element(By.ID, "preview").is_displayed())
    browser.find_element(By.ID, "questions").send_keys(QUESTION)
    browser.find_element(By.ID, "ask").click()
    canvas = browser.find_element(By.ID, "canvas")
    wait(browser, lambda d: canvas.get_attribute("data-drawn") == "regions")

    expected = ask_api(server, IMAGE, [QUESTION])
    shown = shown_answers(browser)
    assert browser.find_element(By.CSS_SELECTOR, "#answers h3").text == QUESTION
    assert [answer for answer, _ in shown[0]] == [a["answer"] for a in expected["results"][0]["answers"]]
    assert [score for _, score in shown[0]] == pytest.approx(
        [100 * a["score"] for a in expected["results"][0]["answers"]], abs=0.051
    )
    assert int(canvas.get_attribute("data-boxes")) == min(10, len(expected["regions"]))
    changed, total = changed_pixels(browser, IMAGE)
    assert changed > 0.005 * total, f"only {changed} of {total} canvas pixels show boxes or labels"
    screenshot(browser, "serve-desktop-regions.png")

    browser.find_element(By.ID, "view-attention").click()
    wait(browser, lambda d: canvas.get_attribute("data-drawn") == "attention")
    assert int(canvas.get_attribute("data-boxes")) > 0
    changed, total = changed_pixels(browser, IMAGE)
    assert changed > 0.01 * total, f"only {changed} of {total} canvas pixels show the heat map"
    words = browser.find_elements(By.CSS_SELECTOR, "#attention-word option")
    assert [w.text.split(": ", 1)[-1] for w in words[1:]] == expected["results"][0]["attention"]["words"]
    screenshot(browser, "serve-desktop-attention.png")

    # Phone size: the canvas shrinks to the width and nothing scrolls sideways; then the dark scheme.
    use_phone(browser)
    canvas_right = "return document.getElementById('canvas').getBoundingClientRect().right"
    wait(browser, lambda d: d.execute_script(canvas_right) <= PHONE[0])
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    browser.find_element(By.CSS_SELECTOR, 'input[name="view"][value="regions"]').click()
    wait(browser, lambda d: canvas.get_attribute("data-drawn") == "regions")
    screenshot(browser, "serve-phone-regions.png")
    use_phone(browser, "dark")
    background = "return getComputedStyle(document.body).backgroundColor"
    wait(browser, lambda d: d.execute_script(background) != "rgb(250, 250, 250)")
    browser.find_element(By.ID, "view-attention").click()
    wait(browser, lambda d: canvas.get_attribute("data-drawn") == "attention")
    screenshot(browser, "serve-phone-dark-attention.png")

    assert console_errors(browser) == []


def test_page_shows_errors(server, browser, tmp_path):
    open_page(browser, server)
    message = browser.find_element(By.ID, "message")
    assert message.get_attribute("aria-live") == "assertive"

    # A file the browser cannot decode is refused before anything is sent.
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a photo")
    browser.find_element(By.ID, "image-input").send_keys(str(text_file))
    wait(browser, lambda d: message.text)
    assert "notes.txt is not an image" in message.text

    # A question over the server's limit: the server's error, naming the field, asked with Ctrl+Enter.
    with urllib.request.urlopen(f"{server}/v1/info", timeout=WAIT_S) as response:
        max_chars = json.load(response)["limits"]["max_question_chars"]
    browser.find_element(By.ID, "image-input").send_keys(str(IMAGE))
    wait(browser, lambda d: d.find_element(By.ID, "preview").is_displayed())
    questions = browser.find_element(By.ID, "questions")
    questions.send_keys("why " * (max_chars // 4 + 1))
    questions.send_keys(Keys.CONTROL, Keys.ENTER)
    wait(browser, lambda d: message.text.startswith("Error "))
    assert message.text.startswith("Error 4") and "question" in message.text, message.text
    assert browser.find_element(By.ID, "ask").is_enabled()
    # The refused request is a console error by design: seeing it shows the console log is read at all.
    logged = console_errors(browser)
    assert any("status of 4" in entry["message"] for entry in logged), logged


# Drop and paste events as a user's would carry the file (a DataTransfer); arguments: base64, name, event kind.
DISPATCH_FILE_JS = """
const [photoBase64, name, kind] = arguments;
const bytes = Uint8Array.from(atob(photoBase64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
if (kind === "drop") {
  document.getElementById("drop-zone").dispatchEvent(
    new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
} else {
  document.getElementById("questions").dispatchEvent(
    new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}
"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_page_takes_dropped_and_pasted_photos(server, browser, kind):
    open_page(browser, server)
    image = IMAGES / "COCO_train2014_000000207647.jpg"  # 408 x 391
    browser.execute_script(DISPATCH_FILE_JS, base64.b64encode(image.read_bytes()).decode(), image.name, kind)
    drop_text = browser.find_element(By.ID, "drop-text")
    wait(browser, lambda d: image.name in drop_text.text)
    assert "408×391" in drop_text.text
    assert browser.find_element(By.ID, "preview").is_displayed()
    assert console_errors(browser) == []
