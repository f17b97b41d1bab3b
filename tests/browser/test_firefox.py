"""The portal in Firefox (Debian's firefox-esr, headless, over Marionette: ``firefox.py``):
the first login's new password through the forms, a workload's progress and state followed
without reloading (``portal.js``), and the workloads page at phone width without sideways
scroll. The whole story runs in Chromium (``test_story.py``); this shows the same pages
and script work in the other engine."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
from marionette_driver import By

from tests.browser.conftest import ARTIFACTS
from tests.browser.firefox import Firefox, firefox_binary, start_firefox
from tests.helpers import wait_for
from tests.server.api import Api, World, put_file, submit
from tests.server.portal import NEW_PASSWORD, new_person
from tests.server.test_progress import health

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def firefox() -> Iterator[Firefox]:
    binary = firefox_binary()
    if binary is None:
        why = ("firefox-esr not found: the portal's Firefox test needs Debian's firefox-esr "
               "(apt-get install firefox-esr; .ci/run does)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    browser = start_firefox(binary)
    yield browser
    browser.close()


@pytest.fixture
def ff(firefox: Firefox):
    """The Marionette client, with no cookie left from another test."""
    firefox.client.delete_all_cookies()
    firefox.client.set_window_rect(width=1280, height=800)
    return firefox.client


def text_of(client, element_id: str) -> str:
    return client.find_element(By.ID, element_id).text


def fill(client, element_id: str, value: str) -> None:
    field = client.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def shoot(client, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(client.screenshot(format="binary", full=True))


def first_login(client, root: str, email: str, temporary: str) -> None:
    client.navigate(root + "/login")
    fill(client, "email", email)
    fill(client, "password", temporary)
    client.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: client.get_url().endswith("/new-password"), timeout=20,
             what="the new-password page")
    fill(client, "password", NEW_PASSWORD)
    fill(client, "confirm", NEW_PASSWORD)
    client.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: client.get_url() == root + "/", timeout=20, what="the home page")


def test_first_login_and_live_progress_in_firefox(ff, world: World):
    root = world.service.root
    person = new_person(world, full_name="Lise Meitner")
    first_login(ff, root, person["email"], person["password"])
    assert "Lise Meitner" in ff.find_element(By.TAG_NAME, "h1").text
    device = world.device()
    work_id = submit(Api(world.service.url, person["api_key"]), device.id,
                     WorkloadName="firefox sweep")
    ff.navigate(f"{root}/portal/workloads/{work_id}")
    assert text_of(ff, "state") == "READY"
    # a mark on the document: gone if the page were reloaded (the DOM, not a script
    # variable: Marionette runs each script in a sandbox of its own)
    ff.execute_script("document.body.dataset.stillThisPage = 'yes';")
    assert device.next_work().json()["WorkId"] == work_id
    device.heartbeat("BUSY", Health=health(work_id, 3, 10))
    wait_for(lambda: text_of(ff, "progress") == "3 / 10 programs", timeout=20,
             what="the progress shown without reloading")
    assert text_of(ff, "state") == "EXECUTING"
    shoot(ff, "firefox-workload-running")
    url = device.report(work_id, {"Outcome": "DONE", "ProgramsDone": 10,
                                  "DeviceSeconds": 12.5}).json()["UploadUrl"]
    assert put_file(url, b"not hdf5").status_code == 200
    wait_for(lambda: text_of(ff, "state") == "DONE", timeout=20, what="DONE shown")
    assert ff.execute_script("return document.body.dataset.stillThisPage;") == "yes"


def test_the_workloads_page_fits_a_phone_in_firefox(ff, world: World):
    root = world.service.root
    person = new_person(world)
    first_login(ff, root, person["email"], person["password"])
    submit(Api(world.service.url, person["api_key"]), world.device().id,
           WorkloadName="a name long enough to wrap at phone width, not to widen the page")
    ff.set_window_rect(width=390, height=844)
    for path in ("/", "/portal/workloads", "/portal/devices", "/portal/submit", "/account"):
        ff.navigate(root + path)
        wide, shown = ff.execute_script("return [document.documentElement.scrollWidth, "
                                        "window.innerWidth];")
        assert wide <= shown, f"{path} scrolls sideways in Firefox at {shown} px: {wide} px"
    ff.navigate(root + "/portal/workloads")
    shoot(ff, "firefox-phone-workloads")
