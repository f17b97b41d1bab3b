"""Password guessing slowed down (``queueservice/logins.py``): the policy as a table, the
count on both engines, and every place a password is checked: the Cognito-compatible login
and ``ChangePassword`` (Cognito's own ``Password attempts exceeded``), the portal's login
and "change my password"."""
from __future__ import annotations

import uuid

import pytest

from queueservice import logins
from queueservice.db import Database
from tests.helpers import wait_for
from tests.server.api import World
from tests.server.portal import NEW_PASSWORD, Browser, logged_in
from tests.server.test_passwords import change, cognito_error, first_login, password_auth

WRONG = "not-the-password"


# -- the policy ----------------------------------------------------------------------------
@pytest.mark.parametrize("failures, expected", [
    (0, None), (4, None),                       # four wrong ones: not locked
    (5, 1_000), (6, 2_000), (7, 4_000),         # then 1 s, doubling
    (15, 15 * 60 * 1000), (500, 15 * 60 * 1000),  # up to 15 minutes, however many
])
def test_the_lock_starts_at_the_fifth_and_doubles_up_to_fifteen_minutes(failures, expected):
    until = logins.locked_until(failures, last_failure_at=1_000_000)
    assert (None if until is None else until - 1_000_000) == expected


def test_the_address_is_one_however_it_is_typed():
    assert logins.subject_of(" Ada@Lab.test ") == logins.subject_of("ada@lab.test")
    assert logins.subject_of("ada@lab.test") != logins.subject_of("bob@lab.test")


# -- the count, on each engine ---------------------------------------------------------------
def standing(db: Database, email: str, now: int):
    with db.reading() as conn:
        return logins.refused_until(logins.standing(conn, email), now)


def fail(db: Database, email: str, now: int, times: int = 1) -> None:
    for _ in range(times):
        with db.transaction() as conn:
            logins.note_failure(conn, email, now)


def test_five_wrong_ones_lock_and_a_right_one_ends_the_count(db: Database):
    fail(db, "ada@lab.test", 1_000, times=4)
    assert standing(db, "ada@lab.test", 1_000) is None
    fail(db, "ADA@lab.test", 2_000)
    assert standing(db, "ada@lab.test", 2_500) == 3_000
    assert standing(db, "ada@lab.test", 3_000) is None  # the lock is over
    assert standing(db, "bob@lab.test", 2_500) is None  # another address: untouched
    with db.transaction() as conn:
        logins.note_success(conn, "ada@lab.test")
    fail(db, "ada@lab.test", 4_000)
    assert standing(db, "ada@lab.test", 4_000) is None  # one wrong one: counting again


def test_a_count_left_alone_for_a_day_starts_over(db: Database):
    fail(db, "ada@lab.test", 1_000, times=9)
    later = 1_000 + logins.FORGET_MS
    assert standing(db, "ada@lab.test", later) is None
    fail(db, "ada@lab.test", later)  # counts as the first, not the tenth
    assert standing(db, "ada@lab.test", later) is None
    with db.reading() as conn:
        assert logins.standing(conn, "ada@lab.test")["failures"] == 1


# -- where passwords are checked -------------------------------------------------------------
def guessed(root: str, email: str, times: int = logins.LOCK_AFTER) -> None:
    for _ in range(times):
        assert cognito_error(password_auth(root, email, WRONG),
                             "NotAuthorizedException") == "Incorrect username or password."


def test_cognito_login_refuses_even_the_right_password_while_locked(world: World):
    root = world.service.root
    email, _ = first_login(world)
    guessed(root, email)
    refused = password_auth(root, email, "first-password-1")
    assert cognito_error(refused, "NotAuthorizedException") == "Password attempts exceeded"
    # the lock is a second long: the right password works once it is over
    wait_for(lambda: password_auth(root, email, "first-password-1").status_code == 200,
             timeout=10, interval=0.2, what="the lock to end")
    # ... and ended the count: one wrong one is only wrong
    assert cognito_error(password_auth(root, email, WRONG),
                         "NotAuthorizedException") == "Incorrect username or password."


def test_an_unknown_address_is_locked_alike(world: World):
    root = world.service.root
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@lab.test"
    guessed(root, nobody)
    assert cognito_error(password_auth(root, nobody, WRONG),
                         "NotAuthorizedException") == "Password attempts exceeded"


def test_change_password_counts_wrong_previous_passwords(world: World):
    root = world.service.root
    email, result = first_login(world)
    for _ in range(logins.LOCK_AFTER):
        assert cognito_error(change(root, result["AccessToken"], WRONG, "second-password-2"),
                             "NotAuthorizedException") == "Incorrect username or password."
    assert cognito_error(change(root, result["AccessToken"], "first-password-1",
                                "second-password-2"),
                         "NotAuthorizedException") == "Password attempts exceeded"
    assert cognito_error(password_auth(root, email, "first-password-1"),
                         "NotAuthorizedException") == "Password attempts exceeded"


def test_the_portal_login_says_so_in_words(world: World):
    _, person = logged_in(world)
    browser = Browser(world.service.root)
    for _ in range(logins.LOCK_AFTER):
        assert "Incorrect username or password." in \
            browser.login(person["email"], WRONG).text
    resp = browser.login(person["email"], NEW_PASSWORD)
    assert resp.status_code == 400 and "too many wrong passwords in a row" in resp.text
    assert browser.cookie is None


def test_the_portal_password_change_counts_wrong_current_passwords(world: World):
    browser, person = logged_in(world)
    fields = {"password": "another-long-password", "confirm": "another-long-password"}
    for _ in range(logins.LOCK_AFTER):
        resp = browser.submit("/account", "/account/password", {**fields, "current": WRONG})
        assert resp.status_code == 400 and "not that one" in resp.text
    resp = browser.submit("/account", "/account/password", {**fields, "current": NEW_PASSWORD})
    assert resp.status_code == 400 and "too many wrong passwords in a row" in resp.text
    assert Browser(world.service.root).login(person["email"], NEW_PASSWORD).status_code == 400
