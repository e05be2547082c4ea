"""An offline, scripted OpenAI-compatible chat server for end-to-end tests.

Real agent runtimes (opencode) talk to it exactly as to a hosted model, so tests
exercise the real runtime without network access or nondeterminism.

Routing rule (why side requests never eat script turns):

* A request whose ``model`` is one of ``side_models`` (configure opencode's
  ``small_model`` to such an id; opencode 1.18 uses it only for title
  generation: no tools, system prompt "You are a title generator...") is a
  *side* request and always gets ``side_text``. As a fallback for configs
  without ``small_model``, a request whose system prompt contains one of
  ``side_markers`` is a side request too.
* Every other chat request is a *main* request. Its conversation is bound to the
  first :class:`Script` whose ``marker`` occurs in the conversation's first user
  message, else to the default script. Each script hands out its turns in order,
  one per main request; once exhausted it answers ``exhausted_text``.

Give every parallel session its own marker: two sessions sharing one script
interleave its turns in arrival order.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "RecordedRequest",
    "Script",
    "ScriptedOpenAIServer",
    "ToolCall",
    "Turn",
    "Usage",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Token counts reported for one turn, so cost/token logging can be asserted."""

    prompt_tokens: int = 100
    completion_tokens: int = 20
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_json(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(frozen=True)
class ToolCall:
    """One function call the scripted model makes; ``id`` is generated when empty."""

    name: str
    arguments: Mapping[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Turn:
    """One scripted model response: text and/or tool calls, or an HTTP error.

    ``error_status`` 400 (with a plain message) makes opencode fail the session
    at once. It retries 408/409/429/5xx, and any message matching its
    "retryable" patterns (status numbers like 429/500, rate limit, overloaded,
    server error, timeout...), up to 5 times with 2 s, 4 s, 8 s... backoff;
    ``retry_after_ms`` sends a ``retry-after-ms`` header, which it obeys, so
    retry paths can be tested quickly.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)
    error_status: int | None = None
    error_message: str = "scripted model failure"
    error_type: str = "invalid_request_error"
    retry_after_ms: int | None = None
    delay: float = 0.0

    @classmethod
    def reply(
        cls,
        text: str,
        *,
        reasoning: str = "",
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> Turn:
        return cls(text=text, reasoning=reasoning, usage=usage or Usage(), delay=delay)

    @classmethod
    def tool(
        cls,
        name: str,
        arguments: Mapping[str, Any],
        *,
        text: str = "",
        reasoning: str = "",
        call_id: str = "",
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> Turn:
        return cls(
            text=text,
            reasoning=reasoning,
            tool_calls=(ToolCall(name, dict(arguments), call_id),),
            usage=usage or Usage(),
            delay=delay,
        )

    @classmethod
    def bash(
        cls,
        command: str,
        *,
        description: str = "Run a scripted command",
        text: str = "",
        reasoning: str = "",
        call_id: str = "",
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> Turn:
        """A call of opencode's ``bash`` tool (it requires ``description``)."""
        return cls.tool(
            "bash",
            {"command": command, "description": description},
            text=text,
            reasoning=reasoning,
            call_id=call_id,
            usage=usage,
            delay=delay,
        )

    @classmethod
    def fail(
        cls,
        status: int = 400,
        message: str = "scripted model failure",
        *,
        error_type: str = "invalid_request_error",
        retry_after_ms: int | None = None,
        delay: float = 0.0,
    ) -> Turn:
        return cls(
            error_status=status,
            error_message=message,
            error_type=error_type,
            retry_after_ms=retry_after_ms,
            delay=delay,
        )


@dataclass
class Script:
    """Turns for the conversations whose first user message contains ``marker``."""

    turns: Sequence[Turn]
    marker: str | None = None
    name: str = ""
    consumed: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.marker or "default"

    @property
    def remaining(self) -> int:
        return max(0, len(self.turns) - self.consumed)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server saw, for assertions: ``kind`` is "main", "side" or "other"."""

    method: str
    path: str
    body: JSON | None
    kind: str
    script: str | None = None
    turn_index: int | None = None
    at: float = 0.0


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def first_user_text(body: Mapping[str, Any]) -> str:
    """Text of the conversation's first user message ("" if none)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


class ScriptedOpenAIServer:
    """Threaded stdlib HTTP server speaking the OpenAI chat-completions protocol."""

    def __init__(
        self,
        default: Sequence[Turn] | Script | None = None,
        *,
        scripts: Sequence[Script] = (),
        side_models: Sequence[str] = ("scripted-small",),
        side_markers: Sequence[str] = ("You are a title generator",),
        side_text: str = "Scripted title",
        exhausted_text: str = "[scripted server: script exhausted]",
        models: Sequence[str] = ("scripted-main", "scripted-small"),
        chunk_size: int = 16,
    ) -> None:
        if isinstance(default, Script):
            self._default = default
        else:
            self._default = Script(list(default or ()), None, "default")
        self._scripts: list[Script] = list(scripts)
        self.side_models = frozenset(side_models)
        self.side_markers = tuple(side_markers)
        self.side_text = side_text
        self.exhausted_text = exhausted_text
        self.models = tuple(models)
        self.chunk_size = max(1, chunk_size)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._call_ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ScriptedOpenAIServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"scripted": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- introspection / configuration -------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to use as an OpenAI ``baseURL`` (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def main_requests(self, script: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in self.requests if r.kind == "main" and (script is None or r.script == script)
        ]

    def add_script(self, script: Script) -> Script:
        """Register a per-session script; safe while the server runs."""
        with self._lock:
            self._scripts.append(script)
        return script

    def set_default(self, turns: Sequence[Turn]) -> None:
        with self._lock:
            self._default = Script(list(turns), None, "default")

    # -- request handling (called from handler threads) --------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_turn(self, body: Mapping[str, Any]) -> tuple[Script, int, Turn | None]:
        """Pick the script by marker and consume its next turn atomically."""
        text = first_user_text(body)
        with self._lock:
            script = next(
                (s for s in self._scripts if s.marker is not None and s.marker in text),
                self._default,
            )
            index = script.consumed
            script.consumed += 1
            turn = script.turns[index] if index < len(script.turns) else None
        return script, index, turn

    def _call_id(self) -> str:
        with self._lock:
            return f"call_scripted_{next(self._call_ids)}"

    def is_side_request(self, body: Mapping[str, Any]) -> bool:
        if str(body.get("model", "")) in self.side_models:
            return True
        messages = body.get("messages")
        if not isinstance(messages, list):
            return False
        system = "\n".join(
            _message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"
        )
        return any(marker in system for marker in self.side_markers)

    def plan(self, body: Mapping[str, Any], path: str) -> tuple[Turn, RecordedRequest]:
        now = time.time()
        if self.is_side_request(body):
            return Turn.reply(self.side_text, usage=Usage(10, 3)), RecordedRequest(
                "POST", path, dict(body), "side", at=now
            )
        script, index, turn = self._next_turn(body)
        record = RecordedRequest("POST", path, dict(body), "main", script.name, index, now)
        if turn is None:
            turn = Turn.reply(self.exhausted_text)
        if turn.tool_calls and any(not c.id for c in turn.tool_calls):
            calls = tuple(
                c if c.id else ToolCall(c.name, c.arguments, self._call_id())
                for c in turn.tool_calls
            )
            turn = dataclasses.replace(turn, tool_calls=calls)
        return turn, record

    def stream_chunks(self, turn: Turn, model: str, include_usage: bool) -> Iterator[JSON]:
        """The ``chat.completion.chunk`` objects for one turn, in wire order."""
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: JSON, finish: str | None = None) -> JSON:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        n = self.chunk_size
        yield chunk({"role": "assistant", "content": ""})
        for i in range(0, len(turn.reasoning), n):
            yield chunk({"reasoning_content": turn.reasoning[i : i + n]})
        for i in range(0, len(turn.text), n):
            yield chunk({"content": turn.text[i : i + n]})
        for index, call in enumerate(turn.tool_calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            args = json.dumps(dict(call.arguments))
            for i in range(0, len(args), n):
                yield chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": args[i : i + n]}}]}
                )
        yield chunk({}, "tool_calls" if turn.tool_calls else "stop")
        if include_usage:
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": turn.usage.to_json(),
            }

    def completion(self, turn: Turn, model: str) -> JSON:
        message: JSON = {"role": "assistant", "content": turn.text or None}
        if turn.reasoning:
            message["reasoning_content"] = turn.reasoning
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
                }
                for c in turn.tool_calls
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if turn.tool_calls else "stop",
                }
            ],
            "usage": turn.usage.to_json(),
        }

    def models_json(self) -> JSON:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                for m in self.models
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr noise; requests are recorded instead."""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(
        self, status: int, payload: JSON, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.rstrip("/").endswith("/models"):
            self.scripted._record(RecordedRequest("GET", self.path, None, "other", at=time.time()))
            self._send_json(200, self.scripted.models_json())
            return
        self._other("GET", b"")

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        if not path.rstrip("/").endswith("/chat/completions"):
            self._other("POST", raw)
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
        except ValueError as exc:
            self._send_json(400, _error_json(f"bad json: {exc}", "invalid_request_error"))
            return
        turn, record = self.scripted.plan(body, self.path)
        self.scripted._record(record)
        if turn.delay > 0:
            time.sleep(turn.delay)
        model = str(body.get("model", "scripted"))
        if turn.error_status is not None:
            headers = (
                {"retry-after-ms": str(turn.retry_after_ms)}
                if turn.retry_after_ms is not None
                else None
            )
            self._send_json(
                turn.error_status, _error_json(turn.error_message, turn.error_type), headers
            )
            return
        if not body.get("stream"):
            self._send_json(200, self.scripted.completion(turn, model))
            return
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in self.scripted.stream_chunks(turn, model, include_usage):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _other(self, method: str, raw: bytes) -> None:
        """Unknown paths get a harmless 200 so a stray probe never breaks a run."""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.scripted._record(
            RecordedRequest(
                method,
                self.path,
                body if isinstance(body, dict) else None,
                "other",
                at=time.time(),
            )
        )
        self._send_json(200, {"ok": True})


def _error_json(message: str, error_type: str) -> JSON:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}
