"""The environment of each child the supervisor starts: the parent decides it.

- The executor (the sandbox) gets allow-listed names only (``ENV_ALLOWED``: what PYNQ and
  QICK need to open the board, from ``supervisor.boardaccess``, the table the unit is
  rendered from), never anything that looks like a credential (``SECRET_NAME``), one BLAS
  thread (keeps its address space small), and ``PYTHONPATH`` so it imports this code.
- The downloader and uploader talk to the queue: they keep the supervisor's environment
  (proxies, CA bundles, ``QICK_*``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional

from boardcore.errors import SandboxError
from supervisor.boardaccess import env_allowed

ENV_ALLOWED = env_allowed()
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|API_?KEY|^AWS_|COGNITO|AUTH",
                         re.IGNORECASE)
# the folder that holds the board packages (supervisor/, executor/, boardcore/, ...)
CODE_PATH = str(Path(__file__).resolve().parent.parent)


def scrubbed_environment(source: Mapping[str, str], extra: Optional[Mapping[str, str]] = None
                         ) -> Dict[str, str]:
    """Allow-listed names of ``source`` only, never a credential, one BLAS thread; then
    ``extra`` (SandboxError if one of its names looks like a secret)."""
    env = {k: v for k, v in source.items() if k in ENV_ALLOWED and not SECRET_NAME.search(k)}
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1"})
    for key, value in (extra or {}).items():
        if SECRET_NAME.search(key):
            raise SandboxError(f"refusing to pass {key} to the executor: it looks like a secret")
        env[key] = value
    return env


def executor_environment(source: Mapping[str, str]) -> Dict[str, str]:
    """The executor's environment: ``scrubbed_environment`` with this code first on
    ``PYTHONPATH`` (it runs ``python -m executor.main``)."""
    path = os.pathsep.join(p for p in (CODE_PATH, source.get("PYTHONPATH")) if p)
    return scrubbed_environment(source, {"PYTHONPATH": path})


def link_environment(source: Mapping[str, str]) -> Dict[str, str]:
    """The downloader's and uploader's environment: the supervisor's own."""
    return dict(source)
