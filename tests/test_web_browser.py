"""End to end in headless Chromium: the app under gunicorn's gevent worker, a real Celery
worker and Redis. Screenshots go to artifacts/screenshots."""

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.processes import wait_for
from sieve.database import Database
from sieve.models import FINAL_STATES
from tests.fixtures_web import PASSWORD

TIMEOUT = 60


def register(driver, url: str, email: str) -> None:
    """Fill in and send the registration form."""
    driver.get(f"{url}/register")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "confirm").send_keys(PASSWORD)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.current_url.rstrip("/") == url)


def state(driver) -> str:
    """The state shown on a prediction page ("" while the page swaps its result block)."""
    try:
        return driver.find_element(By.ID, "state").text
    except StaleElementReferenceException:
        return ""


def test_upload_and_watch_the_result_arrive(web_server, start_worker, browser_factory,
                                            screenshot, known_images, settings, tmp_path):
    """Register, log in, upload, see `done` pushed without a reload, find it in history;
    the worker's log lines carry the request id; another user gets a 404."""
    worker = start_worker()
    url = web_server.url
    driver = browser_factory()
    register(driver, url, "ada@example.com")
    driver.find_element(By.ID, "logout").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.ID, "email"))
    driver.find_element(By.ID, "email").send_keys("ada@example.com")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.ID, "upload-form"))
    screenshot(driver, "1-upload")

    image, label = known_images[0]
    path = tmp_path / "item.png"
    path.write_bytes(image)
    driver.find_element(By.ID, "images").send_keys(str(path))
    driver.find_element(By.ID, "classify").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: "/predictions/" in d.current_url)
    driver.execute_script("window.notReloaded = true;")
    WebDriverWait(driver, TIMEOUT).until(lambda d: state(d) == "done")
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.ID, "top-k"))
    assert driver.execute_script("return window.notReloaded === true;")
    assert label in driver.find_element(By.ID, "label").text
    assert "filter" in driver.find_element(By.ID, "versions").text
    screenshot(driver, "2-result")

    prediction_url = driver.current_url
    prediction_id = prediction_url.rsplit("/", 1)[1]
    db = Database(settings.database_url)
    request_id = db.get_prediction(prediction_id).request_id
    db.dispose()
    assert request_id
    assert f'"request_id": "{request_id}"' in web_server.log()
    wait_for(lambda: f"[request {request_id}]" in worker.log(), TIMEOUT,
             "the request id on the worker's log lines")

    driver.get(f"{url}/history")
    assert "item.png" in driver.find_element(By.ID, "history").text
    screenshot(driver, "3-history")

    other = browser_factory()
    register(other, url, "bob@example.com")
    other.get(prediction_url)
    assert "Not Found" in other.title and "item.png" not in other.page_source
    screenshot(other, "4-other-user")


def test_without_javascript_the_page_refreshes_until_final(web_server, start_worker,
                                                           browser_factory, screenshot):
    """With JavaScript off, a sample reaches a final state through the page's refresh."""
    start_worker()
    driver = browser_factory(javascript=False)
    register(driver, web_server.url, "nojs@example.com")
    driver.find_element(By.ID, "sample-ankle-boot").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: "/predictions/" in d.current_url)
    WebDriverWait(driver, TIMEOUT, poll_frequency=0.5).until(
        lambda d: state(d) in FINAL_STATES)
    assert driver.find_elements(By.ID, "filter")
    screenshot(driver, "nojs-result")


# Collects what the Content-Security-Policy blocks (a CDP script, exempt from the CSP).
WATCH_CSP = ("window.cspViolations = [];"
             "document.addEventListener('securitypolicyviolation', function (e) {"
             "  window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI); });")


def test_the_pages_own_scripts_and_styles_satisfy_the_csp(web_server, start_worker,
                                                         browser_factory, screenshot):
    """Every page under the strict CSP: nothing blocked, the live result still arrives
    (scripts, Server-Sent Events) and its probability bars are drawn (styles)."""
    start_worker()
    driver = browser_factory()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CSP})
    url = web_server.url
    register(driver, url, "csp@example.com")
    for path in ("/", "/history", "/account", "/models", "/api/v1/docs"):
        driver.get(f"{url}{path}")
        assert driver.execute_script("return window.cspViolations;") == [], path
    driver.get(url)
    driver.find_element(By.ID, "sample-ankle-boot").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: "/predictions/" in d.current_url)
    driver.execute_script("window.notReloaded = true;")
    WebDriverWait(driver, TIMEOUT).until(lambda d: state(d) in FINAL_STATES)
    assert driver.execute_script("return window.notReloaded === true;")
    assert driver.execute_script("return window.cspViolations;") == []
    bars = driver.find_elements(By.CSS_SELECTOR, "#top-k .bar")
    if bars:  # accepted by the filter: the classifier's bars
        assert max(bar.size["width"] for bar in bars) > 20
    screenshot(driver, "csp-result")
