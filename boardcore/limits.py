"""The limits of one run: what the supervisor tells the executor with each ``run`` message.

``RunLimits`` is built from the board's settings (``BoardSettings.limits()``), travels on the
bus as a plain dict (``to_message``) and is read back by the executor (``from_message``),
which refuses a key it does not know, a missing key or a value of the wrong type: the
supervisor and the executor are one install, so a mismatch is a bug to report, never a limit
to drop silently.

A workload may carry its own cost cap (the service's ``MaxSeconds``: what its team pays
for at most): ``max_seconds``, and the run stops at ``run_deadline``, the shorter of the
two. It travels only when set (a run without one sends the three limits it always did).

Not to be confused with ``qickwork.WorkloadLimits``: what one workload's programs may ask of
a board (shots, rounds, result sizes), checked on the user's PC and again by the runner,
which derives them from these.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional

from boardcore.errors import LimitsError


@dataclass(frozen=True)
class RunLimits:
    """The limits of one run of a workload on the board."""
    deadline_seconds: float    # the executor stops between programs once this has passed
    max_workload_bytes: int    # the decompressed workload file
    max_result_bytes: int      # the estimated size of all the workload's results
    max_seconds: Optional[float] = None  # the workload's own cost cap (None: none)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, number = getattr(self, f.name), f.type != "int"
            if value is None and f.name in _OPTIONAL:
                continue
            kinds = (int, float) if number else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
                raise LimitsError(f"the run's limit {f.name} = {value!r} is not valid: it must "
                                  f"be a positive {'number' if number else 'integer'}")

    @property
    def capped(self) -> bool:
        """Whether the workload's cost cap, not the board's deadline, ends this run."""
        return self.max_seconds is not None and self.max_seconds < self.deadline_seconds

    @property
    def run_deadline(self) -> float:
        """When this run stops (seconds after it started): the board's deadline, or the
        workload's cost cap when that is shorter."""
        return self.max_seconds if self.capped else self.deadline_seconds

    def to_message(self) -> Dict[str, Any]:
        """The plain dict sent on the bus (the ``limits`` of a ``run`` message); an optional
        limit that is not set is left out."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.name in _OPTIONAL and getattr(self, f.name) is None)}

    @classmethod
    def from_message(cls, message: Any) -> "RunLimits":
        """Read ``limits`` from a ``run`` message; ``LimitsError`` on an unknown, missing or
        ill-typed key."""
        if not isinstance(message, Mapping):
            raise LimitsError(f"the run's limits must be an object of "
                              f"{', '.join(_names())}, not {type(message).__name__}")
        unknown = sorted(set(message) - set(_names()))
        if unknown:
            raise LimitsError(f"the run's limits have unknown keys {', '.join(unknown)} "
                              f"(known: {', '.join(_names())}); the supervisor and the executor "
                              "are from different versions: reinstall the board daemon")
        missing = [name for name in _names() if name not in message and name not in _OPTIONAL]
        if missing:
            raise LimitsError(f"the run's limits lack {', '.join(missing)}; the supervisor "
                              "and the executor are from different versions: reinstall the "
                              "board daemon")
        return cls(**message)


#: the limits a run may go without
_OPTIONAL = ("max_seconds",)


def _names() -> tuple:
    return tuple(f.name for f in fields(RunLimits))
