"""The portal's foundation (docs/portal.md, slice 1) in a real headless Chromium: logging
in (a wrong password, the first login's new password), the keyboard alone, an API key
shown once and revoked, logging out, the phone-width layout. Screenshots of the login,
home and keys pages go to test-artifacts/portal/."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, shoot
from tests.server.api import Api, World
from tests.server.portal import NEW_PASSWORD, logged_in, new_person

pytestmark = pytest.mark.browser


def focused(page: Page) -> dict:
    """What has the keyboard focus: its tag, id and text."""
    return page.evaluate("() => { const e = document.activeElement; "
                         "return {tag: e.tagName, id: e.id, text: e.textContent.trim()}; }")


def test_a_wrong_password_shows_the_error_and_stays_on_the_login_page(page: Page,
                                                                     world: World):
    _, person = logged_in(world)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))  # no session: the login page
    shoot(page, "login")
    page.get_by_label("E-mail").fill(person["email"])
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect username or password.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    expect(page.get_by_label("E-mail")).to_have_value(person["email"])  # kept, not retyped
    shoot(page, "login-refused")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))  # still no session


def test_the_first_login_sets_a_new_password_then_only_that_one_works(page: Page,
                                                                      world: World):
    person = new_person(world, full_name="Grace Hopper")
    page.goto("/login")
    page.get_by_label("E-mail").fill(person["email"])
    page.get_by_label("Password", exact=True).fill(person["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/new-password$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose your password")
    expect(page.get_by_label("E-mail")).to_have_value(person["email"])
    shoot(page, "new-password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password, again").fill(NEW_PASSWORD + "-typo")
    page.get_by_role("button", name="Set my password").click()
    expect(page.get_by_role("alert")).to_contain_text("The two passwords differ")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password, again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set my password").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Grace Hopper")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    # the temporary password stopped working; the new one works
    page.get_by_label("E-mail").fill(person["email"])
    page.get_by_label("Password", exact=True).fill(person["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect username or password.")
    log_in(page, person["email"], NEW_PASSWORD)


def test_the_keyboard_alone_reaches_the_skip_link_and_logs_in(page: Page, world: World):
    _, person = logged_in(world)
    page.goto("/login")
    page.keyboard.press("Tab")
    assert focused(page) == {"tag": "A", "id": "", "text": "Skip to the content"}
    page.keyboard.press("Enter")  # the skip link moves the focus to the content
    expect(page).to_have_url(re.compile(r"/login#main$"))
    assert focused(page)["id"] == "main"
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "email"
    page.keyboard.type(person["email"])
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "password"
    page.keyboard.type(person["password"])
    page.keyboard.press("Tab")
    assert focused(page) == {"tag": "BUTTON", "id": "", "text": "Log in"}
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Enter in the password field sends the form
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    # logged in, the skip link is still the first stop, before the navigation
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Skip to the content"


def test_an_api_key_is_shown_once_works_and_stops_when_revoked(page: Page, world: World):
    _, person = logged_in(world)
    log_in(page, person["email"], person["password"])
    shoot(page, "home")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My API keys")
    page.get_by_label("Label (what it is for; optional)").fill("laptop <script>x</script>")
    page.get_by_role("button", name="Create a key").click()
    key = page.locator("#new-key").inner_text().strip()
    key_id = page.locator("#new-key-id").inner_text().strip()
    assert key and key_id
    expect(page.get_by_role("status")).to_contain_text("laptop <script>x</script>")  # as text
    shoot(page, "keys-created")
    assert Api(world.service.url, key).get("/api-keys").status_code == 200  # it works
    page.goto("/keys")  # the list again: the key itself is gone, its id is listed
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()
    revoke = page.get_by_role("button", name=f"Revoke key {key_id}")
    expect(revoke).to_be_visible()
    shoot(page, "keys")
    revoke.click()
    expect(page).to_have_url(re.compile(r"/keys$"))
    expect(page.get_by_role("button", name=f"Revoke key {key_id}")).to_have_count(0)
    refused = Api(world.service.url, key).get("/api-keys")
    assert refused.status_code == 403 and refused.json()["ErrorKind"] == "unauthorized"


def test_log_out_ends_the_session(page: Page, world: World):
    _, person = logged_in(world)
    log_in(page, person["email"], person["password"])
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/keys")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.go_back()  # the page from before is not shown from a cache (no-store)
    expect(page).to_have_url(re.compile(r"/login$"))


def test_at_phone_width_the_pages_do_not_scroll_sideways(phone: Page, world: World):
    _, person = logged_in(world, full_name="A Rather Long Full Name For A Small Screen")
    phone.goto("/login")
    assert not scrolls_sideways(phone), "the login page scrolls sideways at phone width"
    log_in(phone, person["email"], person["password"])
    assert not scrolls_sideways(phone), "the home page scrolls sideways at phone width"
    shoot(phone, "home-phone")
    phone.goto("/keys")
    phone.get_by_role("button", name="Create a key").click()
    expect(phone.locator("#new-key")).to_be_visible()  # a long secret wraps in its box
    assert not scrolls_sideways(phone), "a new key's page scrolls sideways at phone width"
    phone.goto("/keys")  # a table of keys: it scrolls inside its own box, not the page
    expect(phone.get_by_role("table")).to_be_visible()
    assert not scrolls_sideways(phone), "the keys page scrolls sideways at phone width"
    shoot(phone, "keys-phone")


def scrolls_sideways(page: Page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
