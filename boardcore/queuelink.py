"""What the downloader and uploader share: the queue client from the config, and a bus
loop in the main thread while worker threads talk to the network (ZeroMQ sockets are not
thread-safe, so workers post messages to an outbox the main thread sends). Their command
line and settings: ``boardcore.childstart``."""
from __future__ import annotations

import logging
import queue
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Protocol

from boardcore import exitcodes
from boardcore.bus import ChildBus, Waker
from boardcore.childstart import child_parser, child_settings
from boardcore.errors import BoardConfigError
from boardcore.settings import BoardSettings
from boardcore.spool import Spool
from cloudqueue.auth import device_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import load_config
from cloudqueue.errors import ConfigError, QueueError
from qickbase.backoff import Backoff

log = logging.getLogger("qick")


def device_client(config: Optional[str], credentials: Optional[str], tries: int = 2):
    """(QueueClient, device id) from the config and credentials files. Retries inside the
    client are kept short: the caller has its own backoff across attempts."""
    cfg = load_config(config, credentials)
    auth = device_auth_from_config(cfg)
    client = QueueClient(cfg.api_endpoint, auth, timeout=15.0,
                         backoff=Backoff(base=0.2, cap=1.0), tries=tries)
    return client, cfg.device_id


class Link:
    """The child's side: bus in the main thread, an outbox for the workers, a stop event."""

    def __init__(self, name: str, spool: Spool):
        self.name = name
        self.spool = spool
        self.outbox: "queue.Queue[tuple]" = queue.Queue()
        self.stop = threading.Event()
        self.waker = Waker()

    def post(self, kind: str, **fields: Any) -> None:
        self.outbox.put((kind, fields))
        self.waker.wake()  # sent now, not at the end of the bus loop's poll

    def serve(self, bus: ChildBus, on_message: Callable[[Dict[str, Any]], None],
              workers: List[threading.Thread], **hello: Any) -> int:
        """Say hello, start the workers, and run the bus until asked to stop (or the
        supervisor is silent, or a worker died); closes ``bus``."""
        try:
            bus.hello(**hello)
            for worker in workers:
                worker.start()
            while True:
                for msg in bus.recv(min(0.5, bus.beat.interval), self.waker):
                    if msg["type"] == "stop":
                        self.stop.set()
                    else:
                        on_message(msg)
                while not self.outbox.empty():
                    kind, fields = self.outbox.get_nowait()
                    bus.send(kind, **fields)
                if self.stop.is_set():
                    for worker in workers:
                        worker.join(timeout=5)
                    return exitcodes.OK
                dead = [w.name for w in workers if not w.is_alive()]
                if dead:
                    # its traceback is in the log (threading.excepthook): a process whose
                    # worker died must not keep answering heartbeats; exit, be restarted
                    log.error("%s: the %s thread died; stopping to be restarted", self.name,
                              ", ".join(dead))
                    self.stop.set()
                    return exitcodes.FAILURE
                if not bus.tick():
                    log.error("%s: no word from the supervisor; stopping", self.name)
                    self.stop.set()
                    return exitcodes.PARENT_GONE
        finally:
            bus.close()
            self.waker.close()


class LinkWork(Protocol):
    """What a link child does: answer the supervisor's messages, and work in threads."""

    def on_message(self, msg: Dict[str, Any]) -> None: ...

    def threads(self) -> List[threading.Thread]: ...


def serve_link_child(name: str, summary: str, argv: Optional[List[str]],
                     make: Callable[[Link, QueueClient, str, BoardSettings], LinkWork]) -> int:
    """The life of a downloader or uploader process: its settings and queue client from
    the config, its work, the bus until the supervisor says stop (the exit code)."""
    args = child_parser(f"qick-{name}", summary).parse_args(argv)
    try:
        settings = child_settings(args)
        client, device_id = device_client(args.config, args.credentials)
    except (BoardConfigError, ConfigError, QueueError) as exc:
        log.error("%s", exc)
        return exitcodes.USAGE
    link = Link(name, Spool(settings.spool))
    work = make(link, client, device_id, settings)
    bus = ChildBus(args.bus, name, settings.heartbeat_seconds,
                   settings.heartbeat_timeout_seconds)
    return link.serve(bus, work.on_message, work.threads(), device=device_id)


def run_main(name: str, body: Callable[[], int]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"{name}[%(process)d] %(levelname)s %(message)s")
    try:
        code = body()
    except KeyboardInterrupt:
        code = exitcodes.OK
    sys.exit(code)
