"""The workload page's live facts (``portal.js``) in Chromium when things go wrong: the
service not answering for a while (the page says so, tries again, and catches up without a
reload), and the session ending (the page says so and stops asking)."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import log_in
from tests.server.api import Api, World, submit
from tests.server.portal import new_person
from tests.server.test_progress import health

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
LIVE_MS = 30_000  # the script waits 4 s, then 8 s, after the first two failures


def user_with_work(world: World, page: Page) -> tuple[str, object]:
    person = new_person(world)
    page.goto("/login")
    page.get_by_label("E-mail").fill(person["email"])
    page.get_by_label("Password", exact=True).fill(person["password"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("New password", exact=True).fill("a-long-new-password")
    page.get_by_label("New password, again").fill("a-long-new-password")
    page.get_by_role("button", name="Set my password").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    device = world.device()
    work_id = submit(Api(world.service.url, person["api_key"]), device.id)
    return work_id, device


def test_the_page_tries_again_when_the_service_does_not_answer(page: Page, world: World):
    work_id, device = user_with_work(world, page)
    refused = {"count": 0}

    def drop(route: Route) -> None:  # the first two asks get no answer
        if refused["count"] < 2:
            refused["count"] += 1
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(r".*/portal/api/workloads/.*"), drop)
    page.goto(f"/portal/workloads/{work_id}")
    page.evaluate("document.body.dataset.stillThisPage = 'yes'")
    expect(page.locator("#live-note")).to_contain_text("trying again", timeout=LIVE_MS)
    assert device.next_work().json()["WorkId"] == work_id
    device.heartbeat("BUSY", Health=health(work_id, 4, 10))
    expect(page.locator("#progress")).to_have_text("4 / 10 programs", timeout=LIVE_MS)
    expect(page.locator("#state")).to_have_text("EXECUTING")
    expect(page.locator("#live-note")).to_have_text("")
    assert refused["count"] == 2
    assert page.evaluate("document.body.dataset.stillThisPage") == "yes"


def test_the_page_stops_when_the_session_ends(page: Page, world: World):
    work_id, _ = user_with_work(world, page)
    page.goto(f"/portal/workloads/{work_id}")
    page.context.clear_cookies()  # as if logged out elsewhere: the poll gets a 401
    expect(page.locator("#live-note")).to_contain_text("your session has ended",
                                                       timeout=LIVE_MS)
