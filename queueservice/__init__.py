"""The queue service ``qick-queue``: the Cloud Queue protocol on one PC (SQLite and files),
or as replicas on PostgreSQL and S3.

Layers, each in its own module:

- ``settings``     the limits (lease, attempts, upload TTL, sizes) and their defaults
- ``schema``       the tables, declared once (SQLAlchemy Core)
- ``db``           the database (SQLite or PostgreSQL): connections, transactions, locks
                   across replicas; ``migrations/`` (Alembic) and ``legacy`` (the old list)
- ``replicas``     what replicas share beyond the tables: change notices, one leader
- ``policy``       pure functions: queue order, hand-out and attempt limit, leases, expiry,
                   OFFLINE, queue position (no I/O; tested without processes)
- ``scheduling``   pure: what a device may run now for a facility (calendar, timeslots,
                   maintenance, sessions, credits, fair share) and why the rest waits
- ``transitions``  the workload state machine (pure)
- ``workloads``    the workload store (queue logic over the database)
- ``identities``   users, API keys, passwords, devices, refresh tokens
- ``tokens``       JWTs and presigned file URLs (HMAC)
- ``files``        the files: on disk (temp file + fsync + rename) or in S3, streamed
- ``httpedge``     HTTP helpers: error answers, JSON body checks, the caller's identity
- ``routes_*``     the endpoints; ``app`` wires them into a Starlette application
- ``mockspec``     what ``POST /devices {Mock}`` accepts (pure data)
- ``mockfleet``    runs one board daemon (``qick-supervisor``, simulated board) per mock device
- ``migrate``      moves a SQLite store into PostgreSQL (and its files into S3)
- ``cli``          ``qick-queue init``, ``serve`` and ``migrate``

Nothing in ``cloudqueue`` imports this package, so clients never pull in the web stack.
"""
