"""How the CLI shows things to people: tables, one-line workload summaries, wait progress."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import IO, Any

from cloudqueue.models import Device, Workload, format_time


def _when(moment: datetime | None) -> str:
    return format_time(moment) if moment else "-"


def plain(value: Any) -> Any:
    """A model or a value as JSON-ready data (timestamps in the wire format)."""
    if isinstance(value, (Device, Workload)):
        data = {name: plain(getattr(value, name)) for name in value.FIELDS
                if getattr(value, name) is not None}
        data.update(value.extra)
        return data
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def board_note(device: Device) -> str:
    """`` (mock)`` for a mock device the service runs, `` (simulated)`` for a board daemon
    on a simulated board (its heartbeat says so), else nothing: a real board."""
    if device.extra.get("Mock"):
        return " (mock)"
    return " (simulated)" if device.extra.get("Simulated") else ""


def devices_table(devices: list[Device]) -> str:
    if not devices:
        return "no devices"
    return table([[d.DeviceId, d.DeviceName or "-", (d.DeviceStatus or "-") + board_note(d)
                   + (f": {d.extra['StatusReason']}" if d.extra.get("StatusReason") else ""),
                   _when(d.LastRefreshed)] for d in devices],
                 ["DEVICE ID", "NAME", "STATUS", "LAST SEEN"])


def waiting(work: Workload) -> dict | None:
    """Why READY work waits (``Waiting: {Rule, Message, Until}`` of our service: a
    facility rule holds it), else None."""
    held = work.extra.get("Waiting")
    return held if work.WorkStatus == "READY" and isinstance(held, dict) else None


def shown_status(work: Workload) -> str:
    """The status people see: WAITING for READY work a facility rule holds (the wire
    keeps READY: the original clients know only the stock statuses)."""
    return "WAITING" if waiting(work) else (work.WorkStatus or "-")


def waiting_text(held: dict) -> str:
    """``credits: team t's balance ... (until 12:00:00Z)``."""
    until = held.get("Until")
    return f"{held.get('Rule')}: {held.get('Message')}" + (f" (until {until})" if until else "")


def workloads_table(items: list[Workload]) -> str:
    if not items:
        return "no workloads"
    return table([[w.WorkId, shown_status(w), w.Priority or "-", w.DeviceId or "-",
                   _when(w.CreatedAt), w.UserGivenName or "", w.WorkloadName or ""]
                  for w in items],
                 ["WORK ID", "STATUS", "PRIORITY", "DEVICE", "CREATED", "SUBMITTED BY", "NAME"])


def team_queue_table(items: list[Workload]) -> str:
    """``list --team``: a team's work with its place in its device's queue."""
    if not items:
        return "no workloads"
    return table([[w.WorkId, w.WorkStatus or "-",
                   "-" if w.QueuePosition is None else str(w.QueuePosition),
                   w.DeviceId or "-", _when(w.CreatedAt), w.UserGivenName or "",
                   w.WorkloadName or ""] for w in items],
                 ["WORK ID", "STATUS", "POSITION", "DEVICE", "CREATED", "SUBMITTED BY",
                  "NAME"])


def device_details(device: Device) -> str:
    lines = [f"{'DeviceId':28}{device.DeviceId}",
             f"{'DeviceName':28}{device.DeviceName or '-'}",
             f"{'DeviceStatus':28}{device.DeviceStatus or '-'}{board_note(device)}",
             f"{'LastRefreshed':28}{_when(device.LastRefreshed)}",
             f"{'RefreshTimeout':28}{device.RefreshTimeout}",
             f"{'ConfigurationLastRefreshed':28}{_when(device.ConfigurationLastRefreshed)}"]
    for key, value in device.extra.items():
        lines.append(f"{key:28}{value}")
    if device.Health:
        lines.append(f"{'Health':28}{device.Health}")
    return "\n".join(lines)


def workload_details(work: Workload) -> str:
    lines = []
    for name in ("WorkId", "WorkloadName", "WorkStatus", "DeviceId", "Priority",
                 "UserGivenName", "CreatedAt",
                 "ReadyAt", "QueuePosition", "EstimatedStartAt", "StartedAt", "FinishedAt",
                 "Attempts", "DeviceSeconds", "ErrorKind", "ErrorMessage", "CancelRequested",
                 "Progress"):
        value = getattr(work, name)
        if value is None:
            continue
        if name == "Progress":
            if work.programs is None:
                continue
            value = "{}/{} programs".format(*work.programs)
        if name == "WorkStatus":
            value = shown_status(work)
        lines.append(f"{name:18}{_when(value) if isinstance(value, datetime) else value}")
    if work.extra.get("StatusFrom") == "results":
        lines.append(f"{'StatusFrom':18}the results file (the stock service shows DONE)")
    held = waiting(work)
    if held:
        lines.append(f"{'Waiting':18}{waiting_text(held)}")
    for name in ("EstimatedStartReason", "EstimatedSeconds", "QueueReason"):  # ours: extra
        if work.extra.get(name) is not None:
            lines.append(f"{name:17} {work.extra[name]}")
    for name in MONEY_FIELDS:  # ours (a facility's queue), kept in extra
        if work.extra.get(name) is not None:
            lines.append(f"{name:17} {work.extra[name]}")
    return "\n".join(lines)


#: what ``GET /workloads/{id}`` says about paying for the work (our service)
MONEY_FIELDS = ("TeamId", "MaxSeconds", "EstimatedCost", "Cost", "CostRefunded")


BAR_WIDTH = 20


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[########------------]``: ``done`` of ``total`` as a bar of ``width`` cells."""
    filled = width if total <= 0 else min(width, done * width // total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_line(work: Workload, elapsed: float, *, bar: bool = False) -> str:
    """``READY  position 2  starts ~12:03:04Z  (waited 42s)``, or while it runs
    ``EXECUTING  [######------] 120/201 programs  (waited 42s)`` (``bar``) or
    ``EXECUTING  120/201 programs ...`` (no bar: logs and pipes)."""
    parts = [shown_status(work) if work.WorkStatus else "?"]
    programs = work.programs
    if programs is not None and work.WorkStatus in ("EXECUTING", "UPLOADING", "DONE",
                                                   "FAILED", "CANCELLED"):
        done, total = programs
        counted = f"{done}/{total} programs"
        parts.append(f"{progress_bar(done, total)} {counted}" if bar else counted)
    if work.QueuePosition is not None and work.WorkStatus in ("CREATED", "READY"):
        parts.append(f"position {work.QueuePosition}")
    if work.EstimatedStartAt is not None and work.WorkStatus == "READY":
        parts.append(f"starts ~{work.EstimatedStartAt.astimezone(timezone.utc):%H:%M:%S}Z")
    elif work.extra.get("EstimatedStartReason") and work.WorkStatus == "READY":
        parts.append(str(work.extra["EstimatedStartReason"]))
    held = waiting(work)
    if held:
        parts.append(waiting_text(held))
    if work.ErrorMessage and work.terminal:
        parts.append(work.ErrorMessage)
    return "  ".join(parts) + f"  (waited {int(elapsed)}s)"


def _shown(work: Workload) -> tuple:
    """What a progress line shows of a workload (but the time waited and the estimate, which
    move on their own): a new line is written only when this changes, so a field the line
    does not show (a queue position while it runs) never repeats a line."""
    status = work.WorkStatus
    held = waiting(work)
    return (shown_status(work), (held.get("Rule"), held.get("Message")) if held else None,
            work.QueuePosition if status in ("CREATED", "READY") else None,
            work.programs if status in ("EXECUTING", "UPLOADING", "DONE", "FAILED",
                                        "CANCELLED") else None,
            work.ErrorMessage if work.terminal else None)


class WaitDisplay:
    """On a TTY: one line rewritten in place. Otherwise: one line per change."""

    def __init__(self, stream: IO[str], tty: bool):
        self.stream = stream
        self.tty = tty
        self.last: tuple | None = None
        self.width = 0

    def update(self, work: Workload, elapsed: float) -> None:
        key = _shown(work)
        if self.tty:
            line = progress_line(work, elapsed, bar=True)
            pad = max(0, self.width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
            self.stream.flush()
        elif key != self.last:
            self.stream.write(f"{format_time(datetime.now(timezone.utc))} "
                              f"{progress_line(work, elapsed)}\n")
            self.stream.flush()
        self.last = key

    def close(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _layout(program: dict) -> str:
    """``avg (1, 21, 2) float64; raw (1, 10, 21, 1, 2) int64``: a program's datasets."""
    parts = [f"{d['Name']} ({', '.join(str(n) for n in d['Shape'])}) {d['DType']}"
             for d in program["Datasets"]]
    text = "; ".join(parts) or "no datasets"
    return text + (f"  [{program['Note']}]" if program.get("Note") else "")


def results_summary_text(summary: dict) -> str:
    """What ``userclient show-results FILE`` prints for ``qickwork.summarize_results``:
    the run, then a line per program; consecutive programs with the same acquisition and
    datasets share a line (``3-1000``), so a 1000-point sweep stays readable."""
    status = summary["Status"]
    head = f"{summary['File']}: {status or 'no status recorded (written by another client)'}"
    if summary["ErrorMessage"]:
        head += f" ({summary['ErrorKind'] or 'error'}: {summary['ErrorMessage']})"
    lines = [head]
    if summary["WorkId"] or summary["Device"]:
        lines.append(f"{'work':10}{summary['WorkId'] or '-'} on {summary['Device'] or '-'}")
    if summary.get("Board") == "simulated":
        lines.append(f"{'board':10}SIMULATED (modelled data, not a real QICK board)")
    elif summary.get("Board"):
        lines.append(f"{'board':10}{summary['Board']}")
    if summary["FirmwareName"] or summary["Firmware"]:
        lines.append(f"{'firmware':10}{summary['FirmwareName'] or summary['Firmware']}")
    if summary["QickVersion"]:
        lines.append(f"{'qick':10}{summary['QickVersion']}")
    total = summary["ProgramsTotal"]
    count = len(summary["Programs"])
    lines.append(f"{'programs':10}{count} of {total} completed" if total is not None
                 else f"{'programs':10}{count}")
    if summary["Seconds"] is not None:
        when = ""
        if summary["StartedAt"]:
            when = f" (started {summary['StartedAt']}"
            when += f", finished {summary['FinishedAt']})" if summary["FinishedAt"] else ")"
        lines.append(f"{'time':10}{summary['Seconds']:.2f} s on the board{when}")
    groups: list[list[dict]] = []
    for program in summary["Programs"]:
        last = groups[-1][-1] if groups else None
        if last is not None and last["Index"] + 1 == program["Index"] and \
                (last["AcqType"], _layout(last)) == (program["AcqType"], _layout(program)):
            groups[-1].append(program)
        else:
            groups.append([program])
    rows = []
    for group in groups:
        first, end = group[0]["Index"], group[-1]["Index"]
        seconds = sum(p["Seconds"] or 0.0 for p in group)
        rows.append([str(first) if first == end else f"{first}-{end}", group[0]["AcqType"],
                     f"{seconds:.3f} s", _layout(group[0])])
    if rows:
        lines.append("")
        lines.append(table(rows, ["PROGRAM", "ACQUISITION", "SECONDS", "DATASETS (shape, dtype)"]))
    return "\n".join(lines)
