"""The operator page in a real browser (Debian's chromium + chromium-driver, driven by Selenium)
against the real service on 127.0.0.1."""

import os
import shutil

import cv2
import pytest

pytest.importorskip("starlette", reason="the service needs the terminal extra: pip install 'anonymixer[terminal]'")
pytest.importorskip("selenium", reason="the page test needs selenium: pip install 'anonymixer[dev]'")

from facekit import needs_yunet, photo  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from servicekit import TOKEN, open_site, serving  # noqa: E402
from terminalkit import same_person  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Quotes, markup, an ampersand and non-ASCII: shown literally, never interpreted.
AWKWARD_NAME = "O'Brien \"<b>bold</b>\" & <img src=x onerror=alert(1)> Zoë"

pytestmark = needs_yunet


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    """One store for the module (nobody enrolled yet), on the real models."""
    terminal = open_site(tmp_path_factory.mktemp("site"), enrol=())
    yield terminal
    terminal.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium and chromium-driver (.ci/run installs them with apt-get)")
        pytest.skip("no chromium/chromedriver here: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1500",
                 # A fake camera (a moving test pattern) and no permission prompt, for getUserMedia.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, seconds=120):
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition())


def photo_file(folder, name, image):
    path = folder / name
    cv2.imwrite(str(path), image)
    return str(path)


def open_console(driver, url, token=TOKEN):
    driver.get(url + "/")
    wait_for(driver, lambda: driver.find_element(By.ID, "login").is_displayed())
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


def text(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def test_page_asks_for_the_token_and_refuses_a_wrong_one(browser, terminal):
    with serving(terminal) as url:
        open_console(browser, url, token="a-wrong-token-0123456789")
        wait_for(browser, lambda: text(browser, "login-error") == "The token was refused.")
        assert not browser.find_element(By.ID, "console").is_displayed()
        assert "token" not in browser.current_url


def test_page_enrols_a_photo_accepts_the_same_person_and_rejects_another(browser, terminal, tmp_path):
    with serving(terminal) as url:
        open_console(browser, url)
        wait_for(browser, lambda: "threshold" in text(browser, "store-info"))
        browser.find_element(By.ID, "enrol-name").send_keys(AWKWARD_NAME)
        browser.find_element(By.ID, "enrol-file").send_keys(photo_file(tmp_path, "enrol.jpg", photo("astronaut")))
        browser.find_element(By.CSS_SELECTOR, "#enrol-form button").click()
        wait_for(browser, lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".subject-name")]
                 == [AWKWARD_NAME])
        assert browser.find_elements(By.CSS_SELECTOR, "#subjects-rows b, #subjects-rows td img:not(.face)") == []

        def check(image_name, image):
            browser.find_element(By.ID, "check-name").clear()
            browser.find_element(By.ID, "check-name").send_keys(AWKWARD_NAME)
            browser.find_element(By.ID, "check-file").send_keys(photo_file(tmp_path, image_name, image))
            browser.find_element(By.ID, "verify").click()
            wait_for(browser, lambda: browser.find_element(By.ID, "decision").is_displayed())
            return text(browser, "decision-verdict"), text(browser, "decision-detail")

        same = check("same.jpg", same_person(photo("astronaut")))
        other = check("other.jpg", photo("grace_hopper"))
        assert same[0] == "ACCEPTED" and same[1].startswith(AWKWARD_NAME + ": score")
        assert other[0] == "REJECTED"
        wait_for(browser, lambda: "rejected" in text(browser, "audit-rows"))
        wait_for(browser, lambda: browser.execute_script(
            "const i = document.querySelector('img.face'); return i !== null && i.complete && i.naturalWidth > 0;"))
        shot = os.environ.get("ANONYMIXER_PAGE_SCREENSHOT") or str(tmp_path / "terminal-page.png")
        assert browser.save_screenshot(shot)
    assert [r.outcome for r in terminal.audit(3) if r.action == "verify"] == ["rejected", "accepted"]


def test_page_sends_a_camera_frame_with_the_next_identify(browser, terminal):
    with serving(terminal) as url:
        open_console(browser, url)
        wait_for(browser, lambda: browser.find_element(By.ID, "console").is_displayed())
        browser.find_element(By.ID, "camera-start").click()
        wait_for(browser, lambda: browser.execute_script(
            "return document.getElementById('camera-video').videoWidth > 0"))
        browser.find_element(By.ID, "camera-capture").click()
        wait_for(browser, lambda: text(browser, "camera-status").startswith("Captured a"))
        browser.find_element(By.ID, "identify").click()
        wait_for(browser, lambda: browser.find_element(By.ID, "decision").is_displayed()
                 or text(browser, "check-error") not in ("", "Working…"))
    row = terminal.audit(1)[0]   # the frame reached the model: decoded, not refused as a bad upload
    assert row.action == "identify" and row.outcome != "bad request" and row.source == "http 127.0.0.1"
