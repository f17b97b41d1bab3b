"""The embedded queue service ``qick-queue``: the Cloud Queue protocol on one PC.

Layers, each in its own module:

- ``settings``     the limits (lease, attempts, upload TTL, sizes) and their defaults
- ``db``           the SQLite connection, the versioned schema and its migrations
- ``policy``       pure functions: queue order, hand-out and attempt limit, leases, expiry,
                   OFFLINE, queue position (no I/O; tested without processes)
- ``workloads``    the workload store (queue logic over SQLite)
- ``identities``   users, API keys, passwords, devices, refresh tokens
- ``tokens``       JWTs and presigned file URLs (HMAC)
- ``files``        the files on disk, written by streaming to a temp file + fsync + rename
- ``http``         HTTP helpers: error answers, JSON body checks, the caller's identity
- ``routes_*``     the endpoints; ``app`` wires them into a Starlette application
- ``mockspec``     what ``POST /devices {Mock}`` accepts (pure data)
- ``mockfleet``    runs one board daemon (``qick-supervisor``, simulated board) per mock device
- ``cli``          ``qick-queue init`` and ``qick-queue serve``

Nothing in ``cloudqueue`` imports this package, so clients never pull in the web stack.
"""
