"""Run as ``python -m tests.client.import_probe``: prints which heavy modules the board-side
imports of ``cloudqueue`` pulled in (there should be none)."""
import sys

import cloudqueue.auth  # noqa: F401
import cloudqueue.client  # noqa: F401
import cloudqueue.transfer  # noqa: F401

HEAVY = ("boto3", "botocore", "pycognito", "starlette", "uvicorn", "jwt", "queueservice")

if __name__ == "__main__":
    print([name for name in HEAVY if name in sys.modules])
