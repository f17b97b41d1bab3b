"""The portal's foundation over real HTTP (docs/portal.md, slice 1): logging in, the first
login's new password, logging out, sessions and their revocation, CSRF and Origin checks,
"my API keys", escaping, the cookie's flags. Each test runs on both database engines (the
module's service per engine: ``world``)."""
from __future__ import annotations

import re

import pytest
import requests

from tests.server.api import Api, World
from tests.server.portal import NEW_PASSWORD, Browser, csrf_of, logged_in, new_person

SCRIPT = "<script>alert(1)</script>"


def key_ids(page: requests.Response) -> set[str]:
    return set(re.findall(r'action="/keys/([0-9a-f]+)/revoke"', page.text))


def works(root: str, api_key: str) -> bool:
    """The API key still lets its user in (``GET /api-keys``)."""
    return Api(root, api_key).get("/api-keys").status_code == 200


# -- logging in --------------------------------------------------------------------------
def test_login_with_the_right_password_opens_the_home_page(world: World):
    browser, person = logged_in(world, full_name="Ada Lovelace")
    browser.post("/logout", {"csrf": csrf_of(browser.get("/"))})
    resp = browser.login(person["email"], person["password"])
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    home = browser.get("/")
    assert home.status_code == 200
    assert person["email"] in home.text and "Ada Lovelace" in home.text


def test_a_wrong_password_is_refused_with_why_and_no_session(world: World):
    _, person = logged_in(world)
    browser = Browser(world.service.root)
    resp = browser.login(person["email"], "not-the-password")
    assert resp.status_code == 400
    assert "Incorrect username or password." in resp.text
    assert browser.cookie is None
    assert browser.get("/").headers["location"] == "/login"


def test_an_unknown_email_looks_like_a_wrong_password(world: World):
    resp = Browser(world.service.root).login("nobody@lab.test", "whatever-password")
    assert resp.status_code == 400 and "Incorrect username or password." in resp.text


def test_a_disabled_user_cannot_log_in(world: World):
    _, person = logged_in(world)
    assert world.admin.post(f"/users/{person['id']}/disable").status_code == 200
    browser = Browser(world.service.root)
    resp = browser.login(person["email"], person["password"])
    assert resp.status_code == 400 and "User is disabled." in resp.text
    assert browser.cookie is None


def test_pages_without_a_session_lead_to_the_login_page(world: World):
    browser = Browser(world.service.root)
    for path in ("/", "/keys"):
        resp = browser.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert browser.post("/keys", {"label": "x"}).headers["location"] == "/login"


# -- the first login ---------------------------------------------------------------------
def test_the_first_login_asks_for_a_new_password_and_the_temporary_one_stops(world: World):
    person = new_person(world)
    browser = Browser(world.service.root)
    resp = browser.login(person["email"], person["password"])
    assert resp.status_code == 303 and resp.headers["location"] == "/new-password"
    assert browser.cookie is None  # no session until the new password is set
    assert browser.get("/").headers["location"] == "/login"
    page = browser.get("/new-password")
    assert page.status_code == 200 and person["email"] in page.text
    done = browser.post("/new-password", {"email": person["email"], "password": NEW_PASSWORD,
                                          "confirm": NEW_PASSWORD, "csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert browser.get("/").status_code == 200
    again = Browser(world.service.root)
    assert again.login(person["email"], person["password"]).status_code == 400
    ok = again.login(person["email"], NEW_PASSWORD)
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no second challenge


def test_a_new_password_that_breaks_the_policy_or_differs_is_refused(world: World):
    person = new_person(world)
    browser = Browser(world.service.root)
    browser.login(person["email"], person["password"])
    short = browser.submit("/new-password", "/new-password", {
        "email": person["email"], "password": "short", "confirm": "short"})
    assert short.status_code == 400 and "not long enough" in short.text
    differ = browser.submit("/new-password", "/new-password", {
        "email": person["email"], "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert differ.status_code == 400 and "differ" in differ.text
    assert browser.cookie is None
    # the temporary password is still the one
    assert Browser(world.service.root).login(person["email"], person["password"]) \
        .headers["location"] == "/new-password"


def test_the_new_password_page_is_refused_without_its_cookie(world: World):
    browser = Browser(world.service.root)
    assert browser.get("/new-password").headers["location"] == "/login"
    person = new_person(world)
    resp = browser.submit("/login", "/new-password", {
        "email": person["email"], "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert resp.status_code == 400 and "log in again" in resp.text.lower()
    assert Browser(world.service.root).login(person["email"], person["password"]) \
        .headers["location"] == "/new-password"  # unchanged


# -- sessions end ------------------------------------------------------------------------
def test_logout_revokes_the_session_and_the_old_cookie_gets_the_login_page(world: World):
    browser, _ = logged_in(world)
    cookie = browser.cookie
    resp = browser.post("/logout", {"csrf": csrf_of(browser.get("/"))})
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    replay = requests.get(world.service.root + "/", cookies={"qq_portal": cookie},
                          allow_redirects=False, timeout=30)
    assert replay.status_code == 303 and replay.headers["location"] == "/login"


def test_changing_the_password_ends_every_portal_session(world: World):
    browser, person = logged_in(world)
    second = Browser(world.service.root)
    assert second.login(person["email"], person["password"]).status_code == 303
    login = requests.post(world.service.root + "/", timeout=30, json={
        "AuthFlow": "USER_PASSWORD_AUTH", "ClientId": "qick-queue-users",
        "AuthParameters": {"USERNAME": person["email"], "PASSWORD": person["password"]}},
        headers={"X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
                 "Content-Type": "application/x-amz-json-1.1"})
    access = login.json()["AuthenticationResult"]["AccessToken"]
    changed = requests.post(world.service.root + "/", timeout=30, json={
        "AccessToken": access, "PreviousPassword": person["password"],
        "ProposedPassword": "another-long-password"},
        headers={"X-Amz-Target": "AWSCognitoIdentityProviderService.ChangePassword",
                 "Content-Type": "application/x-amz-json-1.1"})
    assert changed.status_code == 200, changed.text
    for each in (browser, second):
        assert each.get("/").headers["location"] == "/login"


def test_disabling_a_user_stops_their_session_at_the_next_request(world: World):
    browser, person = logged_in(world)
    assert browser.get("/keys").status_code == 200
    assert world.admin.post(f"/users/{person['id']}/disable").status_code == 200
    assert browser.get("/keys").headers["location"] == "/login"
    # enabling again does not bring the old session back
    assert world.admin.post(f"/users/{person['id']}/enable").status_code == 200
    assert browser.get("/keys").headers["location"] == "/login"


def test_a_made_up_session_cookie_gets_the_login_page(world: World):
    resp = requests.get(world.service.root + "/keys", cookies={"qq_portal": "made-up"},
                        allow_redirects=False, timeout=30)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"


# -- CSRF and Origin ---------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_a_form_without_the_right_csrf_token_is_refused_and_changes_nothing(
        world: World, token: str | None):
    browser, person = logged_in(world)
    before = key_ids(browser.get("/keys"))
    data = {"label": "sneaky"} if token is None else {"label": "sneaky", "csrf": token}
    resp = browser.post("/keys", data)
    assert resp.status_code == 403 and "reload the page" in resp.text
    assert key_ids(browser.get("/keys")) == before
    (first,) = before
    revoke = {} if token is None else {"csrf": token}
    assert browser.post(f"/keys/{first}/revoke", revoke).status_code == 403
    assert browser.post("/logout", revoke).status_code == 403
    assert key_ids(browser.get("/keys")) == before  # not revoked, still logged in
    assert works(world.service.url, person["api_key"])


def test_another_users_csrf_token_is_refused(world: World):
    browser, _ = logged_in(world)
    other, _ = logged_in(world)
    before = key_ids(browser.get("/keys"))
    resp = browser.post("/keys", {"label": "x", "csrf": csrf_of(other.get("/keys"))})
    assert resp.status_code == 403
    assert key_ids(browser.get("/keys")) == before


def test_a_form_from_another_origin_is_refused_even_with_the_token(world: World):
    browser, _ = logged_in(world)
    page = browser.get("/keys")
    before = key_ids(page)
    for origin in ("https://evil.example", "null", "http://127.0.0.1:1"):
        resp = browser.post("/keys", {"label": "x", "csrf": csrf_of(page)},
                            headers={"Origin": origin})
        assert resp.status_code == 403, origin
    assert key_ids(browser.get("/keys")) == before
    own = browser.post("/keys", {"label": "mine", "csrf": csrf_of(page)},
                       headers={"Origin": world.service.root})
    assert own.status_code == 200 and len(key_ids(browser.get("/keys"))) == len(before) + 1


def test_the_login_form_needs_its_csrf_token(world: World):
    _, person = logged_in(world)
    browser = Browser(world.service.root)
    resp = browser.post("/login", {"email": person["email"], "password": person["password"]})
    assert resp.status_code == 403 and browser.cookie is None
    browser.get("/login")  # the signed cookie, without the form's token
    resp = browser.post("/login", {"email": person["email"], "password": person["password"],
                                   "csrf": "forged"})
    assert resp.status_code == 403 and browser.cookie is None
    other = Browser(world.service.root)  # a token from another browser's form
    resp = browser.post("/login", {"email": person["email"], "password": person["password"],
                                   "csrf": csrf_of(other.get("/login"))})
    assert resp.status_code == 403 and browser.cookie is None


# -- my API keys -------------------------------------------------------------------------
def test_an_api_key_is_shown_once_works_and_is_never_logged(world: World):
    browser, _ = logged_in(world)
    page = browser.get("/keys")
    made = browser.post("/keys", {"label": "laptop", "csrf": csrf_of(page)})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-key">(qk_[A-Za-z0-9_-]+)<', made.text).group(1)
    assert works(world.service.url, key)
    listed = browser.get("/keys")
    assert key not in listed.text and "laptop" in listed.text
    assert key not in world.service.log_path.read_text()


def test_revoking_a_key_stops_it(world: World):
    browser, person = logged_in(world)
    made = browser.submit("/keys", "/keys", {"label": "to revoke"})
    key = re.search(r'id="new-key">(qk_[A-Za-z0-9_-]+)<', made.text).group(1)
    key_id = re.search(r'id="new-key-id">([0-9a-f]+)<', made.text).group(1)
    assert works(world.service.url, key)
    revoked = browser.submit("/keys", f"/keys/{key_id}/revoke", {})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/keys"
    assert key_id not in key_ids(browser.get("/keys"))
    assert not works(world.service.url, key)
    assert works(world.service.url, person["api_key"])  # the other key goes on


def test_another_users_cookie_sees_only_its_own_keys(world: World):
    alice, _ = logged_in(world)
    bob, bob_person = logged_in(world)
    alice_keys, bob_keys = key_ids(alice.get("/keys")), key_ids(bob.get("/keys"))
    assert alice_keys and bob_keys and not alice_keys & bob_keys
    (bobs,) = bob_keys
    refused = alice.submit("/keys", f"/keys/{bobs}/revoke", {})
    assert refused.status_code == 404
    assert key_ids(bob.get("/keys")) == bob_keys and works(world.service.url,
                                                           bob_person["api_key"])


def test_a_bad_label_is_refused_with_why(world: World):
    browser, _ = logged_in(world)
    before = key_ids(browser.get("/keys"))
    resp = browser.submit("/keys", "/keys", {"label": "x" * 201})
    assert resp.status_code == 400 and "Label must be at most 200" in resp.text
    assert key_ids(browser.get("/keys")) == before


# -- escaping, cookies, headers ----------------------------------------------------------
def test_a_full_name_and_a_key_label_are_rendered_as_text(world: World):
    browser, _ = logged_in(world, full_name=SCRIPT)
    home = browser.get("/")
    assert SCRIPT not in home.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in home.text
    made = browser.submit("/keys", "/keys", {"label": SCRIPT})
    assert made.status_code == 200 and SCRIPT not in made.text
    listed = browser.get("/keys")
    assert SCRIPT not in listed.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(world: World):
    _, person = logged_in(world)
    plain = Browser(world.service.root).login(person["email"], person["password"])
    flags = plain.headers["set-cookie"].lower()
    assert "qq_portal=" in flags and "httponly" in flags and "samesite=strict" in flags
    assert "path=/" in flags and "secure" not in flags
    proxied = Browser(world.service.root)
    page = proxied.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in page.headers["set-cookie"].lower()
    # requests keeps a Secure cookie off plain http: send it as the browser behind TLS would
    resp = requests.post(world.service.root + "/login", allow_redirects=False, timeout=30,
                         headers={"X-Forwarded-Proto": "https"},
                         cookies={"qq_login": page.cookies["qq_login"]},
                         data={"email": person["email"], "password": person["password"],
                               "csrf": csrf_of(page)})
    assert resp.status_code == 303
    (session,) = [c.lower() for c in resp.raw.headers.getlist("set-cookie")
                  if c.startswith("qq_portal=")]
    assert "secure" in session and "httponly" in session and "samesite=strict" in session


def test_pages_are_not_cached_nor_framed_and_the_layout_is_there(world: World):
    browser, _ = logged_in(world)
    home = browser.get("/")
    assert home.headers["cache-control"] == "no-store"
    assert home.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    assert 'name="viewport"' in home.text and 'href="#main"' in home.text
    css = browser.get("/portal/static/portal.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_the_api_paths_answer_as_before(world: World):
    """The portal is mounted after the API: ``POST /`` is still the Cognito login, the API
    still wants a token, not the portal's cookie."""
    browser, person = logged_in(world)
    cognito = requests.post(world.service.root + "/", timeout=30, json={},
                            headers={"X-Amz-Target": "AWSCognitoIdentityProviderService.Nope"})
    assert cognito.json()["__type"] == "UnknownOperationException"
    with_cookie = browser.session.get(world.service.url + "/api-keys", timeout=30)
    assert with_cookie.status_code in (401, 403)
    assert works(world.service.url, person["api_key"])
