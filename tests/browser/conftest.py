"""Fixtures of the portal's browser tests: a real ``qick-queue serve`` driven by Debian's
headless Chromium through Playwright (its Python package only: its own browser download is
never used).

``browser``       the browser (session scope): /usr/bin/chromium, headless, a fresh profile
                  (Playwright's ``launch`` makes a new temporary user data dir each time).
                  Missing: the test is skipped on a developer's machine, a failure in CI
                  (env ``CI`` set), so CI cannot skip the portal silently.
``portal``        a served service for the module (SQLite, its data folder), port 0.
``world``         a ``World`` on it (the admin's API key; users and devices made over HTTP).
``page``          a new browser context per test, laptop size (1280x800), the service as
                  its base URL, downloads accepted, 10 s for any one action.
``phone``         the same at phone width (390x844).
``open_page(viewport=LAPTOP)``  one more page in a context of its own (another person's
                  browser: its own cookies); each is closed at the end of the test.
``shoot(page, name)``  a full-page screenshot to test-artifacts/portal/<name>.png (not
                  committed), for a reviewer to look at.
``log_in(page, email, password)``  the login form filled and sent with the keyboard and
                  mouse as a person would; answers when the home page is there.
``admin_person(world)``  an admin past the first login (password ``NEW_PASSWORD``).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import QueueService, start_queue_service
from tests.server.api import World
from tests.server.portal import NEW_PASSWORD, Browser as HttpBrowser

CHROMIUM = Path("/usr/bin/chromium")
#: no sandbox (containers and CI run as root), and nothing that reaches past the machine
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ACTION_MS = 10_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if CHROMIUM.exists():
        return None
    return (f"{CHROMIUM} not found: the portal's browser tests need Debian's chromium "
            "(apt-get install chromium chromium-driver; .ci/run does)")


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    why = browser_missing_reason()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    service = start_queue_service(tmp_path_factory.mktemp("portal"))
    yield service
    service.stop()


@pytest.fixture
def world(portal: QueueService) -> World:
    return World(portal)


def _page(browser: Browser, portal: QueueService, viewport: dict) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport, base_url=portal.root,
                                   accept_downloads=True)
    context.set_default_timeout(ACTION_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, portal: QueueService) -> Iterator[Page]:
    yield from _page(browser, portal, LAPTOP)


@pytest.fixture
def phone(browser: Browser, portal: QueueService) -> Iterator[Page]:
    """Phone width in a desktop window: a mobile emulation would zoom a too-wide page out
    to fit, hiding the horizontal scroll this size is here to catch."""
    yield from _page(browser, portal, PHONE)


@pytest.fixture
def open_page(browser: Browser, portal: QueueService) -> Iterator[Callable[..., Page]]:
    opened: list[Iterator[Page]] = []

    def opener(viewport: dict = LAPTOP) -> Page:
        pages = _page(browser, portal, viewport)
        opened.append(pages)
        return next(pages)

    yield opener
    for pages in opened:
        pages.close()  # the generator's finally: its context closed


def shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")


def admin_person(world: World) -> dict[str, str]:
    """An admin with a password of their own: {email, password, id}."""
    email = f"admin-{uuid.uuid4().hex[:8]}@lab.test"
    made = world.admin.post("/users", json={"Email": email, "FullName": "Ada Admin",
                                            "Groups": ["Admin"]})
    assert made.status_code == 200, made.text
    done = HttpBrowser(world.service.root).first_login(email, made.json()["TemporaryPassword"])
    assert done.status_code == 303 and done.headers["location"] == "/", done.text[:500]
    return {"email": email, "password": NEW_PASSWORD, "id": made.json()["UserId"]}
