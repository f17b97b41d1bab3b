"""Fakes at the queue links' network seam, for direct tests without processes.

- ``MockTransport``: requests' transport replaced by a function, in the manner of httpx's
  ``MockTransport``: the real ``upload_file``/``download_file`` code runs, and the test
  says what the presigned-URL store answers (a status and a body, or an exception).
- ``FakeQueueClient``: the queue API as the downloader and uploader call it, answering from
  a script (``answers``: per method, the next answers or exceptions to raise); every call
  is recorded. Its ``session`` carries the mock transport, as a real client's does.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
from requests.structures import CaseInsensitiveDict

Handler = Callable[[str, str, bytes], Tuple[int, bytes]]


class MockTransport(requests.adapters.BaseAdapter):
    def __init__(self, handler: Handler):
        super().__init__()
        self.handler = handler
        self.seen: List[Tuple[str, str, bytes]] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        body = body.encode() if isinstance(body, str) else (body or b"")
        self.seen.append((request.method, request.url, body))
        status, content = self.handler(request.method, request.url, body)
        answer = requests.Response()
        answer.status_code = status
        answer.raw = io.BytesIO(content)
        answer.headers = CaseInsensitiveDict({"Content-Length": str(len(content))})
        answer.url, answer.request, answer.reason = request.url, request, "mock"
        return answer

    def close(self) -> None:
        pass


def mock_session(handler: Handler) -> Tuple[requests.Session, MockTransport]:
    transport = MockTransport(handler)
    session = requests.Session()
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport


class FakeQueueClient:
    def __init__(self, session: requests.Session,
                 capabilities: Tuple[str, ...] = ("holding", "long-poll", "failed-state")):
        self.session = session
        self.capabilities = set(capabilities)
        self.answers: Dict[str, List[Any]] = {}
        self.calls: List[Tuple[str, Dict[str, Any]]] = []

    def _answer(self, method: str, default: Any, **call: Any) -> Any:
        self.calls.append((method, call))
        queued = self.answers.get(method)
        answer = queued.pop(0) if queued else default
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def get_work(self, device_id: str, wait_seconds: Optional[int] = None,
                 holding: Optional[List[str]] = None) -> Optional[Dict[str, Any]]:
        return self._answer("get_work", None, device_id=device_id, holding=holding)

    def results_upload_url(self, device_id: str, work_id: str,
                           device_seconds: Optional[float] = None,
                           programs_done: Optional[int] = None) -> str:
        return self._answer("results_upload_url", f"https://store.test/results/{work_id}",
                            device_id=device_id, work_id=work_id)

    def report_outcome(self, device_id: str, work_id: str, status: str, **fields: Any
                       ) -> Dict[str, Any]:
        return self._answer("report_outcome", {}, device_id=device_id, work_id=work_id,
                            status=status, **fields)

    def heartbeat(self, device_id: str, status: str, health: Any = None) -> Dict[str, Any]:
        return self._answer("heartbeat", {}, device_id=device_id, status=status)
