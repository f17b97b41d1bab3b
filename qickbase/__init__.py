"""The utilities every side of the project shares, one of each (standard library only).

- ``atomicfile``: the one way to write a file durably (temporary name, fsync, rename,
  fsync the folder), whole or streamed.
- ``backoff``: the one retry delay policy (exponential, capped, with jitter).

Imported by the protocol (``cloudqueue``), the service (``queueservice``), the user's
library (``userclient``), the workload format (``qickwork``) and the board's processes;
it imports nothing of theirs, and nothing outside the standard library (the board runs it
on Python 3.10).
"""
