"""The home page and /docs as people see them: rendered by headless Chromium (Debian's ``chromium``,
driven through its ``chromedriver`` by Selenium), for a tensor model, a mapped deployment and an
OpenAI-style model.

Every curl line the rendered page shows is run as shown and must succeed; every "Try it" form is sent
from the page and must answer; an edited body gets the server's JSON error in the page. Screenshots
are kept in ``build/test-artifacts/`` (``TEST_ARTIFACTS`` overrides).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.server.conftest import ROOT, Server

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
MAPPING = {"instances": "rows[*].[a, b, c, d]"}
MAPPED_RESPONSE = {"virginica": "predictions[*][2]", "ref": "request.ref"}
MAPPED_EXAMPLE = {"ref": "r-1", "rows": [{"a": 6.7, "b": 3.0, "c": 5.2, "d": 2.3}]}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "headless Chromium is needed: apt-get install chromium chromium-driver (make browser)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(30)
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def mapped(start_server, iris_path: Path) -> Server:
    return start_server(iris_path, "--name", "iris", "--mapping-request", json.dumps(MAPPING),
                        "--mapping-response", json.dumps(MAPPED_RESPONSE),
                        "--mapping-example", json.dumps(MAPPED_EXAMPLE))


def run_curl(line: str) -> tuple[int, str]:
    """Run a curl line as the page shows it; its HTTP status and body."""
    done = subprocess.run(["bash", "-c", line + " -w '\\n%{http_code}'"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (line, done.stderr)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def answer_of(chrome: WebDriver, form: WebElement) -> tuple[int, str]:
    """Open a try-it form, press Send, and wait for the answer it shows."""
    if form.get_attribute("open") is None:
        form.find_element(By.TAG_NAME, "summary").click()
    out = form.find_element(By.CSS_SELECTOR, "pre.answer")
    chrome.execute_script("delete arguments[0].dataset.status; arguments[0].textContent = '';", out)
    form.find_element(By.CSS_SELECTOR, "button.send").click()
    WebDriverWait(chrome, 120).until(lambda _: out.get_attribute("data-status"))
    return int(out.get_attribute("data-status") or 0), out.text


def screenshot(chrome: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = int(chrome.execute_script("return document.documentElement.scrollHeight"))
    chrome.set_window_size(1280, min(max(height, 800), 8000))
    chrome.execute_script("window.scrollTo(0, 0)")
    path = ARTIFACTS / f"{name}.png"
    assert chrome.save_screenshot(str(path)) and path.stat().st_size > 10_000
    chrome.set_window_size(1280, 1600)
    return path


def check_home(chrome: WebDriver, server: Server, name: str, expect: list[str]) -> list[str]:
    """Render /, run every curl line shown, send every form; returns the curl lines."""
    chrome.get(server.url("/"))
    assert chrome.title == "modelserver"
    text = chrome.find_element(By.TAG_NAME, "body").text
    assert "Status: ready" in text and all(w in text for w in expect), text
    lines = [e.text for e in chrome.find_elements(By.CSS_SELECTOR, "pre.curl")]
    assert lines and all(line.startswith("curl ") for line in lines)
    for line in lines:
        status, body = run_curl(line)
        assert status == 200, (line, body)
        assert body.startswith("data: ") or json.loads(body), (line, body)
    forms = chrome.find_elements(By.CSS_SELECTOR, "details.try")
    assert len(forms) == len(lines)  # one form per example
    for form, line in zip(forms, lines):
        status, shown = answer_of(chrome, form)
        assert status == 200 and shown.startswith("200 OK"), (line, shown)
    screenshot(chrome, f"home-{name}")
    return lines


def edit_and_send(chrome: WebDriver, form: WebElement, body: str) -> tuple[int, str]:
    area = form.find_element(By.TAG_NAME, "textarea")
    area.clear()
    area.send_keys(body)
    return answer_of(chrome, form)


def check_docs(chrome: WebDriver, server: Server, name: str, must_work: list[str]) -> None:
    """Render /docs: a form per endpoint; each answers JSON (never 5xx); ``must_work`` ones answer 200."""
    chrome.get(server.url("/docs"))
    rows = chrome.find_elements(By.CSS_SELECTOR, "table tr")[1:]
    assert len(rows) > 30
    seen = {}
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        key = f"{cells[0].text} {cells[1].find_element(By.TAG_NAME, 'code').text}"
        status, shown = answer_of(chrome, cells[1].find_element(By.CSS_SELECTOR, "details.try"))
        assert 200 <= status < 500, (key, shown)
        seen[key] = status
    bad = {k: seen.get(k) for k in must_work if seen.get(k) != 200}
    assert not bad, bad
    screenshot(chrome, f"docs-{name}")


def test_a_tensor_model_s_pages(browser: WebDriver, iris: Server) -> None:
    lines = check_home(browser, iris, "tensor", ["features", "V1:", "V2:"])
    assert any("/v1/models/iris:predict" in line for line in lines)
    # a person edits the example: the page shows the server's JSON error
    form = browser.find_elements(By.CSS_SELECTOR, "details.try")[0]
    status, shown = edit_and_send(browser, form, '{"instances": [[1.0, 2.0]]}')
    assert status == 400 and "expected shape [4]" in shown, shown
    status, shown = edit_and_send(browser, form, '{"instances": [[6.0, 2.7, 5.1, 1.6], [5.1, 3.5, 1.4, 0.2]]}')
    assert status == 200 and shown.count("[") >= 3, shown
    check_docs(browser, iris, "tensor", ["POST /v1/models/{model}:predict", "POST /v2/models/{model}/infer",
                                         "POST /v1/models/{model}:explain", "GET /v2/models/{model}",
                                         "POST /predict", "POST /{signature}/predict", "GET /v1/models"])


def test_a_mapped_deployment_s_pages(browser: WebDriver, mapped: Server) -> None:
    lines = check_home(browser, mapped, "mapped", ["Custom mapping", "Mapped:", MAPPING["instances"]])
    (line,) = [x for x in lines if x.split()[-3].endswith("/predict") or "/predict -d" in x]
    status, body = run_curl(line)
    assert status == 200 and json.loads(body)["ref"] == "r-1"
    check_docs(browser, mapped, "mapped", ["POST /predict", "POST /explain", "POST /v1/models/{model}:predict"])


def test_an_openai_model_s_pages(browser: WebDriver, llm: tuple[Server, Path]) -> None:
    server, _ = llm
    lines = check_home(browser, server, "openai", ["OpenAI-style API", "openai SDK:", "from openai import OpenAI"])
    assert any("/v1/chat/completions" in x for x in lines) and any('"explain": true' in x for x in lines)
    check_docs(browser, server, "openai", ["POST /v1/completions", "POST /v1/chat/completions",
                                           "GET /openai/v1/models", "POST /v1/models/{model}:predict"])
