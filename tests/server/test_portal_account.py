"""My account (``/account``): changing my password (the current one asked first; every
other session ends, this browser's goes on), logging out everywhere, CSRF on both forms.
Each test runs on both database engines (``world``)."""
from __future__ import annotations

from tests.server.api import World
from tests.server.portal import NEW_PASSWORD, Browser, csrf_of, logged_in

CHANGED = "another-long-password"


def change(browser: Browser, current: str, new: str, confirm: str | None = None):
    return browser.submit("/account", "/account/password", {
        "current": current, "password": new, "confirm": new if confirm is None else confirm})


def second_browser(world: World, email: str, password: str) -> Browser:
    other = Browser(world.service.root)
    assert other.login(email, password).headers["location"] == "/"
    assert other.get("/account").status_code == 200
    return other


def test_without_a_session_the_account_page_sends_to_login(world: World):
    assert Browser(world.service.root).get("/account").headers["location"] == "/login"


def test_the_account_page_shows_who_i_am_as_text(world: World):
    browser, person = logged_in(world, full_name="<img src=x onerror=alert(1)>")
    page = browser.get("/account")
    assert page.status_code == 200 and person["email"] in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x" not in page.text


def test_a_changed_password_ends_every_other_session_and_this_one_goes_on(world: World):
    browser, person = logged_in(world)
    other = second_browser(world, person["email"], NEW_PASSWORD)
    resp = change(browser, NEW_PASSWORD, CHANGED)
    assert resp.status_code == 303 and resp.headers["location"] == "/account?changed=1"
    page = browser.get("/account?changed=1")
    assert page.status_code == 200 and "Your password is changed" in page.text
    assert other.get("/account").headers["location"] == "/login"  # the other one ended
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 400
    assert Browser(world.service.root).login(person["email"], CHANGED).status_code == 303


def test_a_wrong_current_password_changes_nothing(world: World):
    browser, person = logged_in(world)
    other = second_browser(world, person["email"], NEW_PASSWORD)
    resp = change(browser, "not-my-password", CHANGED)
    assert resp.status_code == 400
    assert "Your current password is not that one" in resp.text
    assert other.get("/account").status_code == 200  # nobody was logged out
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 303


def test_a_new_password_the_policy_refuses_or_typed_twice_differently(world: World):
    browser, person = logged_in(world)
    short = change(browser, NEW_PASSWORD, "short")
    assert short.status_code == 400 and "Password not long enough" in short.text
    differ = change(browser, NEW_PASSWORD, CHANGED, confirm=CHANGED + "x")
    assert differ.status_code == 400 and "The two new passwords differ" in differ.text
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 303


def test_both_forms_refuse_a_missing_or_wrong_csrf_token(world: World):
    browser, person = logged_in(world)
    other = second_browser(world, person["email"], NEW_PASSWORD)
    fields = {"current": NEW_PASSWORD, "password": CHANGED, "confirm": CHANGED}
    for token in (None, "wrong-token"):
        extra = {} if token is None else {"csrf": token}
        assert browser.post("/account/password", {**fields, **extra}).status_code == 403
        assert browser.post("/account/logout-everywhere", extra).status_code == 403
    assert other.get("/account").status_code == 200
    assert browser.get("/account").status_code == 200
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 303


def test_another_users_csrf_token_does_not_pass(world: World):
    mine, _ = logged_in(world)
    theirs, _ = logged_in(world)
    token = csrf_of(theirs.get("/account"))
    assert mine.post("/account/logout-everywhere", {"csrf": token}).status_code == 403
    assert mine.get("/account").status_code == 200


def test_log_out_everywhere_ends_every_session_of_mine_and_no_one_elses(world: World):
    browser, person = logged_in(world)
    other = second_browser(world, person["email"], NEW_PASSWORD)
    someone_else, _ = logged_in(world)
    resp = browser.submit("/account", "/account/logout-everywhere", {})
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert browser.get("/account").headers["location"] == "/login"
    assert other.get("/account").headers["location"] == "/login"
    assert someone_else.get("/account").status_code == 200
    # the password is unchanged: logging in again works
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 303
