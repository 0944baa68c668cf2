"""The status page at `/` in a real headless Chromium, served by an in-process host.

One host (SQLite; catalog, health, SLO, automation and http plugins, plus a plugin whose
work-queue handler always fails) and one browser serve the whole module. The host runs
in a blocking portal's event loop on its own thread, so the test drives the browser
synchronously and records check runs or creates tokens through the portal while the
page stays open. Screenshots land in `test-artifacts/status-page-*.png`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import BaseModel, ConfigDict
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from catalog_plugin import CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, health_service
from reactive_core import EntityChange, Host, RetryPolicy, WorkQueue, apply_config_text, hookimpl
from reactive_core._clock import utcnow
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.http.plugin import HttpPlugin
from reactive_core.http.tokens import Scope, create_in
from slo_plugin import SloPlugin

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_SECONDS = 20

CONFIG = """
systems:
  - {id: api, name: Orders API}
  - {id: db, name: Orders database}
dependencies:
  - {source: api, target: db, impact: critical}
checks:
  - id: api-http
    name: Orders API health endpoint
    strategy: http
    interval_seconds: 60
    config: {url: "http://127.0.0.1:9/health", expected_status: [200]}
  - id: db-tcp
    name: Orders database port
    strategy: tcp
    interval_seconds: 60
    config: {host: 127.0.0.1, port: 9}
associations:
  - system: api
    check: api-http
    thresholds: {degraded_min_failures: 1, unhealthy_min_failures: 1}
  - system: db
    check: db-tcp
    thresholds: {degraded_min_failures: 1, unhealthy_min_failures: 1}
objectives:
  - {id: api-availability, system: api, target: 99.9, window_days: 30,
     dependency_exclusion: self-only}
  - {id: db-availability, system: db, target: 99.5, window_days: 7}
rules:
  - id: api-changed
    triggers:
      - entity: "health:api"
    actions:
      - log: "api is {{ trigger.newStatus }}"
"""


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class ShiftedClock:
    """The real time moved back by `offset`: the setup writes an hour of history, then
    the clock meets the browser's (offset 0) before the page opens."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() - self.offset


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str


class FailingExports:
    """A `job` kind whose work-queue handler always fails: each job is dead-lettered
    after one retry."""

    name = "failing-exports"

    def __init__(self) -> None:
        self.attempts = 0

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity("job", state=Job)
        registry.on_entity_changed(
            "job", self.export,
            delivery=WorkQueue("exports", retry=RetryPolicy(max_retries=1, base_seconds=0.01,
                                                            jitter=0)))

    async def export(self, change: EntityChange) -> None:
        self.attempts += 1
        raise RuntimeError(f"cannot export {change.id}: the archive is read-only")


@dataclass
class Served:
    host: Host
    portal: BlockingPortal
    clock: ShiftedClock
    exports: FailingExports
    url: str

    def run(self, check_id: str, outcome: CheckOutcome) -> None:
        """Record one run of `check_id` now and let every handler finish."""
        health = health_service(self.host)
        self.portal.call(lambda: health.record_run(check_id, outcome, timestamp=self.clock()))
        self.portal.call(self.host.drain)

    def token(self, name: str, scope: Scope) -> str:
        token: str = self.portal.call(self.host.run, create_in, name, scope, utcnow())
        return token


UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=12.0, result={"status_code": 200})
DB_DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1000.0,
                       result={"error": "ConnectionRefusedError: [Errno 111] Connection refused"})
API_DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=87.0,
                        result={"status_code": 503, "error": "status 503, expected [200]"})


async def _history(served: Served) -> None:
    """Both systems up, an outage of db (api down with it), later one of api alone;
    one export job, dead-lettered."""
    host, clock = served.host, served.clock
    health = health_service(host)

    async def at(minutes_ago: int, **outcomes: CheckOutcome) -> None:
        clock.offset = timedelta(minutes=minutes_ago)
        for check_id, outcome in outcomes.items():
            await health.record_run(check_id.replace("_", "-"), outcome, timestamp=clock())
            await host.drain()

    clock.offset = timedelta(minutes=180)
    await apply_config_text(host, CONFIG, source="status-page.yaml")
    await at(175, db_tcp=UP, api_http=UP)
    await at(120, db_tcp=DB_DOWN, api_http=API_DOWN)
    await at(105, db_tcp=UP, api_http=UP)
    await at(50, api_http=API_DOWN)
    await at(45, api_http=UP)
    clock.offset = timedelta(0)
    await host.entity("job").mutate("nightly-export", lambda _tx, _prev: Job(name="nightly"))
    await host.drain()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    database = tmp_path_factory.mktemp("status-page") / "reactive.db"
    clock = ShiftedClock()
    exports = FailingExports()
    host = Host(database_url=f"sqlite:///{database}", clock=clock, entry_points=False,
                plugins=[CatalogPlugin, HealthPlugin, SloPlugin, AutomationPlugin, HttpPlugin,
                         exports],
                config={"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False,
                        "shutdown_timeout_seconds": 1,
                        "plugins": {"health": {"scheduler": False},
                                    "http": {"enabled": True, "listen": "127.0.0.1:0"}}})
    with start_blocking_portal(backend="asyncio") as portal, \
            portal.wrap_async_context_manager(host):
        plugin = host.plugin("http")
        assert isinstance(plugin, HttpPlugin) and plugin.url is not None
        result = Served(host=host, portal=portal, clock=clock, exports=exports,
                        url=plugin.url + "/")
        portal.call(_history, result)
        yield result


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"the status page tests need a browser: {', '.join(missing)} not found"
        if _ci():
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,1600", "--force-prefers-reduced-motion"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition: Any, what: str) -> Any:
    # A condition that meets an element the live page just replaced is asked again.
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"waited {WAIT_SECONDS}s for {what}")


def console_errors(driver: WebDriver) -> list[str]:
    """SEVERE entries of the browser console since the last call."""
    get_log = getattr(driver, "get_log", None)
    if get_log is None:  # a driver without the log endpoint
        return []
    entries: list[dict[str, Any]] = get_log("browser")
    return [e["message"] for e in entries if e.get("level") == "SEVERE"]


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1280, max(900, min(int(height) + int(chrome), 5000)))
    driver.save_screenshot(str(ARTIFACTS / f"status-page-{name}.png"))


def open_page(driver: WebDriver, served: Served) -> None:
    driver.get(served.url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"),
         "the page to load every section")
    wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live",
         "the live stream to connect")


def status_of(driver: WebDriver, system: str) -> str | None:
    # Read in one script: the live page replaces rows as changes arrive, so an element
    # found by one call may be gone by the next (a stale element reference).
    status: str | None = driver.execute_script(
        "const cell = document.querySelector(arguments[0]);"
        "return cell ? cell.getAttribute('data-status') : null;",
        f'tr[data-system="{system}"] .status')
    return status


def text_of(driver: WebDriver, selector: str) -> str | None:
    """The text of the first element `selector` finds (in one script, like `status_of`)."""
    text: str | None = driver.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found ? found.innerText : null;", selector)
    return text


def notices(driver: WebDriver) -> list[str]:
    return [n.text for n in driver.find_elements(By.CSS_SELECTOR, ".notice") if n.is_displayed()]


def test_the_page_shows_systems_slos_rules_and_changes_without_console_errors(
    served: Served, browser: WebDriver,
) -> None:
    console_errors(browser)
    open_page(browser, served)

    assert browser.find_element(By.ID, "instance").text == served.host.instance_id
    assert notices(browser) == []
    assert status_of(browser, "api") == "healthy" and status_of(browser, "db") == "healthy"
    api, slo = 'tr[data-system="api"]', 'tr[data-objective="api-availability"]'
    assert "Orders API" in (text_of(browser, f"{api} .name") or "")
    assert text_of(browser, f"{api} .checks") == "1 / 1 healthy"
    assert "/ 99.90 %" in (text_of(browser, f"{slo} .availability") or "")
    assert "%" in (text_of(browser, f"{slo} .budget") or "")
    attribution = text_of(browser, f"{slo} .attribution") or ""
    assert "self 5 min" in attribution and "upstream 15 min" in attribution, attribution
    wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#burndowns img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"), "the burn-down charts")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#burndowns figure")) == 2
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-rule="api-changed"]')
    assert browser.find_elements(By.CSS_SELECTOR, '#changes tr[data-kind="health"]')
    screenshot(browser, "loaded")
    assert console_errors(browser) == []


def test_a_system_turning_unhealthy_shows_without_a_reload(
    served: Served, browser: WebDriver,
) -> None:
    open_page(browser, served)
    browser.execute_script("window.statusPageNotReloaded = true")
    assert status_of(browser, "api") == "healthy"
    runs_before = len(browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]"))

    served.run("api-http", API_DOWN)

    wait(browser, lambda d: status_of(d, "api") == "unhealthy", "api to show unhealthy")
    reason = text_of(browser, 'tr[data-system="api"] .reason') or ""
    assert "api-http" in reason and "HTTP 503" in reason and "87 ms" in reason, reason
    assert "status 503, expected [200]" in reason
    assert status_of(browser, "db") == "healthy"
    wait(browser, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#changes tr.fresh[data-kind="health"][data-entity="api"]'),
        "the change to stream into Recent changes")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]"))
         > runs_before, "the rule's new run")
    assert browser.execute_script("return window.statusPageNotReloaded === true")
    screenshot(browser, "unhealthy")
    assert console_errors(browser) == []


def test_replay_is_refused_without_a_write_token_and_works_with_one(
    served: Served, browser: WebDriver,
) -> None:
    open_page(browser, served)
    browser.execute_script("sessionStorage.clear()")
    rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tr[data-delivery]")
    assert len(rows) == 1
    assert "cannot export nightly-export" in rows[0].find_element(By.CSS_SELECTOR, ".error").text
    delivery = rows[0].get_attribute("data-delivery")
    message = browser.find_element(By.ID, "message")

    rows[0].find_element(By.CSS_SELECTOR, "button.replay").click()
    wait(browser, lambda d: message.is_displayed() and "401" in message.text,
         "the refusal without a token")
    assert "needs a bearer token of scope write" in message.text
    assert message.get_attribute("data-kind") == "error"
    assert message.get_attribute("aria-live") == "polite"
    # the console is read for real: the refused request is the one error it shows
    errors = console_errors(browser)
    assert any("/replay" in m and "401" in m for m in errors), errors
    assert [m for m in errors if "/replay" not in m] == []
    screenshot(browser, "replay-refused")

    field = browser.find_element(By.ID, "token")
    field.send_keys(served.token("page-reader", Scope.READ))
    browser.find_element(By.CSS_SELECTOR, f'tr[data-delivery="{delivery}"] button.replay').click()
    wait(browser, lambda d: "403" in message.text, "the refusal of a read-only token")
    assert "read-only" in message.text
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-delivery="{delivery}"]')

    attempts = served.exports.attempts
    field.clear()
    field.send_keys(served.token("page-writer", Scope.WRITE))
    browser.find_element(By.CSS_SELECTOR, f'tr[data-delivery="{delivery}"] button.replay').click()
    wait(browser, lambda d: "replayed" in message.text, "the replay to succeed")
    assert message.get_attribute("data-kind") == "ok"
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-delivery="{delivery}"]')
    assert browser.execute_script(
        "return sessionStorage.getItem('reactive-core.write-token')") == field.get_attribute("value")
    screenshot(browser, "replayed")
    served.portal.call(served.host.drain)
    assert served.exports.attempts == attempts + 2  # run again, retried once, dead again
