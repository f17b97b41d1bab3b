"""Helpers of the portal's HTTP-level tests: a browser-like client (``requests.Session``,
cookies kept, redirects not followed unless asked) and a user made with a password."""
from __future__ import annotations

import re
import uuid
from typing import Any

import requests

from tests.server.api import World

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')
NEW_PASSWORD = "a-long-new-password"


def csrf_of(page: requests.Response) -> str:
    """The CSRF token in a page's first form."""
    match = CSRF_FIELD.search(page.text)
    assert match, f"no CSRF field on {page.url}: {page.text[:500]}"
    return match.group(1)


class Browser:
    """One browser on the portal: its cookie jar, its own service root."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.session = requests.Session()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.root + path, allow_redirects=False, timeout=30, **kw)

    def post(self, path: str, data: dict, **kw: Any) -> requests.Response:
        return self.session.post(self.root + path, data=data, allow_redirects=False,
                                 timeout=30, **kw)

    def submit(self, page_path: str, path: str, data: dict, **kw: Any) -> requests.Response:
        """Open ``page_path``, then post its form to ``path`` with the page's CSRF token."""
        page = self.get(page_path)
        assert page.status_code == 200, (page.status_code, page.text[:500])
        return self.post(path, {**data, "csrf": csrf_of(page)}, **kw)

    def login(self, email: str, password: str) -> requests.Response:
        return self.submit("/login", "/login", {"email": email, "password": password})

    def first_login(self, email: str, temporary: str,
                    new: str = NEW_PASSWORD) -> requests.Response:
        """Log in with the temporary password and set ``new``: answers the last redirect."""
        resp = self.login(email, temporary)
        assert resp.status_code == 303 and resp.headers["location"] == "/new-password", \
            (resp.status_code, resp.text[:500])
        return self.submit("/new-password", "/new-password",
                           {"email": email, "password": new, "confirm": new})

    @property
    def cookie(self) -> str | None:
        return self.session.cookies.get("qq_portal")


def new_person(world: World, full_name: str = "Test User", *,
               admin: bool = False) -> dict[str, str]:
    """A user (an admin if ``admin``) with a temporary password: {email, password, id,
    api_key}."""
    email = f"p{uuid.uuid4().hex[:10]}@lab.test"
    body = {"Email": email, "FullName": full_name, **({"Groups": ["Admin"]} if admin else {})}
    resp = world.admin.post("/users", json=body)
    assert resp.status_code == 200, resp.text
    made = resp.json()
    return {"email": email, "password": made["TemporaryPassword"], "id": made["UserId"],
            "api_key": made["ApiKey"]}


def logged_in(world: World, full_name: str = "Test User", *,
              admin: bool = False) -> tuple[Browser, dict[str, str]]:
    """A user (an admin if ``admin``) past the first login (password ``NEW_PASSWORD``),
    and their browser."""
    person = new_person(world, full_name, admin=admin)
    browser = Browser(world.service.root)
    done = browser.first_login(person["email"], person["password"])
    assert done.status_code == 303 and done.headers["location"] == "/", done.text[:500]
    person["password"] = NEW_PASSWORD
    return browser, person
