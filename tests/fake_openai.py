"""A fake OpenAI-compatible server on 127.0.0.1 that the real `openai` client talks to over HTTP, scripted per test.

    with FakeOpenAI([error(429), ok("```python\\n...\\n```")]) as server:
        client = LLMClient(LLMConfig(model="m", api_key="k", base_url=server.base_url))

Each POST /v1/chat/completions consumes the next scripted Reply; when the script runs out the server answers with
`default` (a 400 unless given, so a test that makes more calls than it scripted fails loudly instead of hanging).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str = ""
    prompt_tokens: int = 120
    completion_tokens: int = 60
    error_code: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as the body as is (garbage that is not JSON)
    delay_s: float = 0.0
    drop: bool = False  # close the connection without answering (a connection reset)
    finish_reason: str = "stop"  # "length": the answer was cut at the output token limit


def ok(content: str, prompt_tokens: int = 120, completion_tokens: int = 60) -> Reply:
    return Reply(content=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def error(status: int, message: str = "", code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, message=message or f"fake error {status}", error_code=code, headers=headers or {})


EXHAUSTED = error(400, "fake server: script exhausted (the test made more calls than it scripted)")


class FakeOpenAI:
    def __init__(self, script: Iterable[Reply] = (), default: Reply | None = None) -> None:
        self._script: deque[Reply] = deque(script)
        self._default = default or EXHAUSTED
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
            return self._script.popleft() if self._script else self._default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode(), {})
                    return
                reply = fake._next(body, {k.lower(): v for k, v in self.headers.items()})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._send(reply.status, _payload(reply, body), reply.headers)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up (the point of some tests) is not an error of the fake.
        return


def _payload(reply: Reply, request: dict[str, Any]) -> bytes:
    if reply.raw is not None:
        return reply.raw
    if reply.status != 200:
        err = {"message": reply.message, "type": "fake_error", "code": reply.error_code, "param": None}
        return json.dumps({"error": err}).encode()
    completion = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }
    return json.dumps(completion).encode()
