"""The web portal (issue 13, docs/portal.md): server-rendered pages at ``/`` of the service,
in the same process as the API. ``sessions`` keeps the browser logins (table
``portal_sessions``), ``csrf`` the checks on every form, ``routes`` the pages."""
