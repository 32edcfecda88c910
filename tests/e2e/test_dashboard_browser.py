"""Acceptance: the dashboard in a real browser. Headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against a real `caselog serve` on the demo data plus a few
cases driven through the API: sign in with the form, each view renders, a search finds a case, a
case page shows its timeline, a chart draws, and a determination made through the API appears on
the open page without a reload (server-sent events). Screenshots go to the test's tmp dir and
must not be blank. `make test` installs the browser when it is missing; it is not skipped."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import datetime, timedelta

import httpx
import pytest

from infra.demo.samples import later, request
from tests.support import free_port, start_serve

CLOCK_START = "2027-03-02T15:00:00Z"  # after the demo's last case (it ends about 80 days after today)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def png_is_not_blank(png: bytes) -> bool:
    """A PNG whose pixels are not all one colour (decoded here: no imaging library needed)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    colours: set[bytes] = set()
    previous = bytearray(stride)
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filters
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        previous = line
        if row % 8 == 0:
            colours.update(bytes(line[i : i + channels]) for i in range(0, stride, channels * 7))
        if len(colours) > 20:
            return True
    return len(colours) > 20


@pytest.fixture
def served(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "CASELOG_DATA_DIR": str(data), "CASELOG_CLOCK": "manual", "CASELOG_CLOCK_START": CLOCK_START}
    env.pop("CASELOG_DATABASE_URL", None)
    env.pop("CASELOG_SECRET", None)
    cli = [sys.executable, "-m", "infra.cli"]
    subprocess.run([*cli, "demo"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = start_serve(env, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"

    def token(*args: str) -> str:
        out = subprocess.run([*cli, "token", *args], env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    yield base, token, tmp_path
    proc.terminate()
    proc.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


@pytest.fixture
def browser(tmp_path):
    assert CHROMIUM and CHROMEDRIVER, (
        "the browser test needs Debian's chromium and chromium-driver:"
        " `make test` installs them (apt-get install chromium chromium-driver)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")), options=options
    )
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Api:
    def __init__(self, base: str, tokens: dict):
        self.base, self.tokens = base, tokens

    def call(self, method: str, path: str, who: str, **kw) -> dict:
        r = httpx.request(
            method, self.base + path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=10, **kw
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    def submit(self, policy: str, member_no: int, **kw) -> dict:
        doc = self.call(
            "POST", "/documents", "provider", files={"file": ("notes.pdf", b"%PDF-1.4 notes", "application/pdf")}
        )
        now = datetime.fromisoformat(CLOCK_START.replace("Z", "+00:00"))
        body = request(policy, date_of_service=later(now, 14), documents=[doc], member_no=member_no, **kw)
        return self.call("POST", "/cases", "provider", json=body)


def test_the_dashboard_in_a_browser(served, browser, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, _ = served
    tokens = {
        "ops": token("--role", "ops", "--sub", "ops-lead"),
        "provider": token("--role", "provider", "--sub", "dr-doe", "--npi", "1234567893"),
        "md": token("--role", "reviewer", "--sub", "dr-okafor", "--credential", "MD"),
        "admin": token("--role", "admin", "--sub", "root"),
    }
    api = Api(base, tokens)
    urgent = api.submit("cigna-commercial/medical-oncology", 901, urgent=True)
    pending = api.submit("cigna-commercial/medical-oncology", 902)
    held = api.submit("healthspring-ma/radiation-oncology", 903)
    api.call(
        "POST",
        f"/cases/{held['case_id']}/holds",
        "md",
        json={"requested_items": ["treatment plan", "simulation notes"]},
    )
    slot = (datetime.fromisoformat(CLOCK_START.replace("Z", "+00:00")) + timedelta(hours=3)).isoformat()
    api.call(
        "POST",
        f"/cases/{held['case_id']}/p2p",
        "provider",
        json={
            "level": "pre_decision",
            "slot": slot,
            "reviewer": "Dr. Okafor",
            "contact": {"name": "Office", "phone": "555-0100"},
        },
    )
    api.call("POST", "/admin/clock", "admin", json={"advance": "PT56H"})  # the urgent case is now at risk
    # (the hold lapsed and the P2P slot passed with it; schedule one for the day on another case)
    held2 = api.submit("cigna-commercial/dme", 904)
    api.call("POST", f"/cases/{held2['case_id']}/holds", "md", json={"requested_items": ["face-to-face notes"]})
    now = datetime.fromisoformat(CLOCK_START.replace("Z", "+00:00")) + timedelta(hours=56)
    api.call(
        "POST",
        f"/cases/{held2['case_id']}/p2p",
        "provider",
        json={
            "level": "pre_decision",
            "slot": (now + timedelta(hours=2)).isoformat(),
            "reviewer": "Dr. Okafor",
            "contact": {"name": "Office", "phone": "555-0100"},
        },
    )
    wait = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shoot(name: str) -> None:
        png = browser.get_screenshot_as_png()
        (shots / f"{name}.png").write_bytes(png)
        assert png_is_not_blank(png), f"{name}.png is blank"

    # sign in with the form: no token in any URL
    browser.get(f"{base}/dashboard")
    wait.until(ready.presence_of_element_located((By.ID, "token")))
    assert "/dashboard/sign-in" in browser.current_url
    shoot("01-sign-in")
    browser.find_element(By.ID, "token").send_keys(tokens["ops"])
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "queue")))
    assert browser.current_url == f"{base}/dashboard" and tokens["ops"] not in browser.current_url
    cookie = browser.get_cookie("caselog_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")  # the event stream is open

    # the queue: urgent, at risk and overdue highlighted in colour and words, time left, the rule
    queue = browser.find_element(By.ID, "queue")
    row = queue.find_element(By.CSS_SELECTOR, f'tr[data-case="{urgent["case_number"]}"]')
    assert "URGENT" in row.text and "AT RISK" in row.text and "left" in row.text
    assert "urgent 72 h (medical oncology)" in row.text
    assert "at-risk" in row.get_attribute("class")
    assert row.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    assert "OVERDUE" in queue.text  # the demo's open cases are past due by now
    assert "standard 15 days (commercial)" in queue.text
    held_section = browser.find_element(By.ID, "held")
    assert held2["case_number"] in held_section.text and "face-to-face notes" in held_section.text
    assert "left" in held_section.text
    p2p = browser.find_element(By.ID, "p2p")
    assert held2["case_number"] in p2p.text and "pre decision" in p2p.text
    assert "Rivera" not in browser.page_source and "1958-04-02" not in browser.page_source  # ops: no member data
    shoot("02-queue")

    # sorting and paging without a reload
    browser.execute_script("window.stillHere = 'yes'")
    queue.find_element(By.LINK_TEXT, "Case").click()
    wait.until(
        lambda d: (
            "sorted" in d.find_element(By.CSS_SELECTOR, "#queue th a.sorted").get_attribute("class")
            and "Case" in d.find_element(By.CSS_SELECTOR, "#queue th a.sorted").text
        )
    )
    numbers = [
        r.get_attribute("data-case") for r in browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr[data-case]")
    ]
    assert numbers == sorted(numbers) and len(numbers) >= 4
    assert browser.execute_script("return window.stillHere") == "yes"

    # the worklist: the portal's tabs and a search that finds a case
    browser.find_element(By.LINK_TEXT, "Worklist").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "nav.tabs")))
    tabs = [t.get_attribute("data-tab") for t in browser.find_elements(By.CSS_SELECTOR, "nav.tabs a")]
    assert tabs == ["Pending", "Approved", "Partially Approved", "Denied", "Cancelled", "All"]
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs a[data-tab="Approved"]').click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "nav.tabs a.on").get_attribute("data-tab") == "Approved")
    assert browser.find_elements(By.CSS_SELECTOR, "#worklist tbody tr[data-case]")  # the demo approved several
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs a[data-tab="All"]').click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "nav.tabs a.on").get_attribute("data-tab") == "All")
    box = browser.find_element(By.ID, "q")
    box.send_keys(held["case_number"])
    browser.find_element(By.ID, "search").click()
    wait.until(
        lambda d: (
            [r.get_attribute("data-case") for r in d.find_elements(By.CSS_SELECTOR, "#worklist tbody tr[data-case]")]
            == [held["case_number"]]
        )
    )
    shoot("03-worklist-search")

    # a case page: its timeline, clocks, and the history as of an earlier instant
    browser.find_element(By.CSS_SELECTOR, f'#worklist tr[data-case="{held["case_number"]}"] a').click()
    wait.until(ready.presence_of_element_located((By.ID, "timeline")))
    events = [e.get_attribute("data-type") for e in browser.find_elements(By.CSS_SELECTOR, "#timeline li.event")]
    assert (
        events[:3] == ["CaseSubmitted", "CaseHeld", "LetterIssued"]
        and "P2PScheduled" in events
        and "HoldLapsed" in events
    )
    assert "treatment plan" in browser.find_element(By.ID, "timeline").text
    assert "decision due" in browser.find_element(By.CSS_SELECTOR, "table.clocks").text
    assert (
        "request for information letter to the provider by fax"
        in browser.find_element(By.CSS_SELECTOR, "table.letters").text
    )
    shoot("04-case")
    as_of = browser.find_element(By.ID, "as_of")
    browser.execute_script("arguments[0].value = arguments[1]", as_of, "2027-03-02T10:05")  # 15:05 UTC, plan time EST
    browser.find_element(By.ID, "show-as-of").click()
    wait.until(ready.presence_of_element_located((By.ID, "as-of-note")))
    assert "status held" in browser.find_element(By.ID, "as-of-note").text  # before the hold lapsed
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline li.event.later")

    # the figures: charts drawn as SVG with data
    browser.get(f"{base}/dashboard/figures?from=2026-12-01&to=2027-03-08")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) >= 6
    values = [float(m.get_attribute("data-value")) for m in browser.find_elements(By.CSS_SELECTOR, "svg.chart .mark")]
    assert values and any(v > 0 for v in values)
    assert charts[0].size["width"] > 300 and charts[0].size["height"] > 100
    shoot("05-figures")

    browser.find_element(By.LINK_TEXT, "Services requiring PA").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "table.services")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.services tbody tr")) == 6
    shoot("06-services")

    # live: a determination through the API shows on the open page without a reload
    browser.find_element(By.LINK_TEXT, "Queue").click()
    wait.until(lambda d: d.find_element(By.ID, "live").text.startswith("live"))
    assert browser.find_elements(By.CSS_SELECTOR, f'#queue tr[data-case="{pending["case_number"]}"]')
    open_before = int(browser.find_element(By.CSS_SELECTOR, '[data-count="open"]').text)
    browser.execute_script("window.stillHere = 'yes'")
    api.call("POST", f"/cases/{pending['case_id']}/determination", "md", json={"outcome": "approved"})
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#queue tr[data-case="{pending["case_number"]}"]'))
    wait.until(lambda d: int(d.find_element(By.CSS_SELECTOR, '[data-count="open"]').text) == open_before - 1)
    assert browser.execute_script("return window.stillHere") == "yes"  # the same page: no reload
    assert int(browser.execute_script("return document.body.dataset.changes || '0'")) >= 1
    shoot("07-live-update")

    # sign out: the session ends, the dashboard asks for a token again
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait.until(ready.presence_of_element_located((By.ID, "token")))
    browser.get(f"{base}/dashboard")
    wait.until(ready.presence_of_element_located((By.ID, "token")))
    assert browser.get_cookie("caselog_session") is None


@pytest.mark.parametrize("page, rendered", [("/docs", ".swagger-ui .opblock"), ("/redoc", "redoc-wrap, .redoc-wrap")])
def test_the_api_docs_render_in_a_browser_with_no_network(served, browser, tmp_path, page, rendered):
    """/docs and /redoc draw the whole API from vendored assets: the browser has no network but
    the served process (no CDN is reachable here, and none is named)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, _ = served
    browser.get(base + page)
    WebDriverWait(browser, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR, rendered)))
    assert "submit" in browser.page_source.lower()  # an operation of the document is drawn
    png = browser.get_screenshot_as_png()
    (tmp_path / f"{page.strip('/')}.png").write_bytes(png)
    assert png_is_not_blank(png), f"{page} is blank"
