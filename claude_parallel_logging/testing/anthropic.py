"""Offline scripted stand-in for the Anthropic Messages API.

The real Claude Code CLI can be pointed at this server with ``ANTHROPIC_BASE_URL``
so end-to-end tests exercise the real CLI and SDK without any network access or
real model: each "main conversation" request consumes the next scripted
:class:`Turn`; everything else gets a harmless canned answer.

Main vs side requests
---------------------
Claude Code can make auxiliary model calls besides the agent loop; with CLI 2.1.330
the only one seen is session-title generation (``tools: []`` plus a JSON-schema
``output_config``), and it is already switched off by
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` or ``CLAUDE_CODE_DISABLE_TERMINAL_TITLE=1``.
Side calls must not consume script turns, so the rule (:func:`is_main_request`) is:
a ``POST /v1/messages`` is a main-loop request iff its body has a non-empty ``tools``
list. Subagent loops also send tools, so they consume turns too (in arrival order).
Side requests get ``"ok"`` (or a minimal JSON value matching a requested schema) and
zero usage. Pass ``ScriptedAnthropicServer(main_request=...)`` to change the rule.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "RecordedRequest",
    "ScriptedAnthropicServer",
    "ToolCall",
    "Turn",
    "Usage",
    "error_turn",
    "is_main_request",
    "text_turn",
    "thinking_turn",
    "tool_turn",
]

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES = 64 * 1024 * 1024
_SOCKET_TIMEOUT_S = 30.0
DONE_TEXT = "done"
SIDE_TEXT = "ok"


@dataclass(frozen=True)
class Usage:
    """Token numbers reported for one scripted response, so tests can check accounting."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class ToolCall:
    """A tool_use block; ``id`` is generated (``toolu_...``) when not given."""

    name: str
    input: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Turn:
    """One scripted model response to one main-loop request.

    Content is emitted in the order thinking, text, tool calls, like the real API.
    ``error_status`` turns the response into an HTTP error with an Anthropic error body.
    """

    text: str | None = None
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    error_status: int | None = None
    error_type: str = "api_error"
    error_message: str = "scripted error"
    retryable: bool = False
    delay_s: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.error_status is not None


def text_turn(text: str, usage: Usage | None = None) -> Turn:
    return Turn(text=text, usage=usage or Usage())


def tool_turn(
    name: str,
    input: dict[str, Any],
    *,
    text: str | None = None,
    tool_id: str | None = None,
    usage: Usage | None = None,
) -> Turn:
    return Turn(
        text=text,
        tool_calls=(ToolCall(name=name, input=input, id=tool_id),),
        usage=usage or Usage(),
    )


def thinking_turn(thinking: str, text: str, usage: Usage | None = None) -> Turn:
    return Turn(thinking=thinking, text=text, usage=usage or Usage())


def error_turn(
    status: int = 500,
    error_type: str = "api_error",
    message: str = "scripted error",
    *,
    retryable: bool = False,
) -> Turn:
    """An HTTP error answer that ends the CLI run at once (one request for 5xx/529)."""
    return Turn(
        error_status=status, error_type=error_type, error_message=message, retryable=retryable
    )


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, for assertions in tests."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    main: bool
    turn_index: int | None
    received_at: float


def is_main_request(body: dict[str, Any]) -> bool:
    """Default main-loop rule: the request offers a non-empty ``tools`` list.

    Observed with CLI 2.1.330: agent-loop requests always carry the tool list, while
    the session-title request sends ``tools: []`` plus a JSON-schema ``output_config``.
    System-prompt sniffing was rejected: the full Claude Code prompt mentions words
    like "summarize" and would misclassify main requests.
    """
    tools = body.get("tools")
    return isinstance(tools, list) and len(tools) > 0


def _schema_value(schema: Any, depth: int = 0) -> Any:
    """Minimal value satisfying a JSON schema, for structured-output side requests."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {
            name: _schema_value(props.get(name), depth + 1)
            for name in required
            if isinstance(name, str)
        }
    if kind == "array":
        return []
    if kind == "string":
        return "Scripted session"
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return None


def _structured_schema(body: dict[str, Any]) -> Any:
    config = body.get("output_config")
    if isinstance(config, dict):
        fmt = config.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema")
    return None


def _retry_key(headers: dict[str, str], body: dict[str, Any]) -> str:
    """Identify a conversation state: a CLI re-send keeps session and message count.

    The message list itself is not compared because the CLI edits it between
    attempts (after a 400 it drops beta features and rewrites tool reminders).
    """
    session = next((v for k, v in headers.items() if k.lower() == "x-claude-code-session-id"), None)
    if session is None:
        metadata = body.get("metadata")
        session = json.dumps(metadata.get("user_id") if isinstance(metadata, dict) else None)
    messages = body.get("messages")
    return f"{session}:{len(messages) if isinstance(messages, list) else 0}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_01{uuid.uuid4().hex[:22]}"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("scripted-anthropic: " + format, *args)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(_SOCKET_TIMEOUT_S)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            raise ValueError("request body too large")
        raw = self.rfile.read(length) if length > 0 else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        return raw

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("request-id", _new_id("req"))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _handle(self) -> None:
        owner = self.server.owner
        try:
            raw = self._read_body()
            body: dict[str, Any] | None = None
            if raw:
                try:
                    parsed = json.loads(raw)
                    body = parsed if isinstance(parsed, dict) else {"_raw": parsed}
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
            reply = owner._respond(self.command, self.path, dict(self.headers.items()), body)
        except Exception as exc:
            logger.exception("scripted-anthropic: handler failed")
            reply = _Reply(
                500,
                json.dumps(
                    {"type": "error", "error": {"type": "api_error", "message": str(exc)}}
                ).encode(),
                "application/json",
                {"x-should-retry": "false"},
            )
        self._send(reply)

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: ScriptedAnthropicServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class ScriptedAnthropicServer:
    """Threaded local Anthropic API double that replays a script of :class:`Turn`.

    Thread-safe: requests may arrive concurrently from several CLI processes; turns
    are handed out in arrival order under a lock.
    """

    def __init__(
        self,
        turns: Iterable[Turn] = (),
        *,
        model: str | None = None,
        main_request: Callable[[dict[str, Any]], bool] = is_main_request,
        done_text: str = DONE_TEXT,
        side_text: str = SIDE_TEXT,
        side_usage: Usage = Usage(input_tokens=0, output_tokens=0),
    ) -> None:
        self._lock = threading.Lock()
        self._turns: list[Turn] = list(turns)
        self._next_turn = 0
        self._model = model
        self._main_request = main_request
        self._done_text = done_text
        self._side_text = side_text
        self._side_usage = side_usage
        self._requests: list[RecordedRequest] = []
        self._sticky_errors: dict[str, Turn] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> ScriptedAnthropicServer:
        with self._lock:
            if self._httpd is not None:
                return self
            self._httpd = _Server(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="scripted-anthropic",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = None
            self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> ScriptedAnthropicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------

    @property
    def url(self) -> str:
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("server not started")
        host, port = httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of all POST /v1/messages requests (main and side), in arrival order."""
        with self._lock:
            return [
                r.body
                for r in self._requests
                if r.body is not None and r.path.split("?")[0] == "/v1/messages"
            ]

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        """Bodies of main-loop /v1/messages requests only."""
        with self._lock:
            return [r.body for r in self._requests if r.main and r.body is not None]

    @property
    def all_requests(self) -> list[RecordedRequest]:
        """Every request received (any path), for discovering what the CLI calls."""
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self._requests]

    @property
    def remaining_turns(self) -> int:
        with self._lock:
            return len(self._turns) - self._next_turn

    def add_turns(self, turns: Iterable[Turn]) -> None:
        """Extend the script (e.g. between two ClaudeSDKClient queries)."""
        with self._lock:
            self._turns.extend(turns)

    # -- request handling --------------------------------------------------------

    def _respond(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> _Reply:
        route = path.split("?")[0].rstrip("/")
        main = False
        turn: Turn | None = None
        turn_index: int | None = None
        retry_key: str | None = None
        if method == "POST" and route == "/v1/messages" and body is not None:
            main = self._main_request(body)
            if main:
                retry_key = _retry_key(headers, body)
        with self._lock:
            sticky = self._sticky_errors.get(retry_key) if retry_key is not None else None
            if sticky is not None:
                turn = sticky
            elif main and self._next_turn < len(self._turns):
                turn_index = self._next_turn
                turn = self._turns[turn_index]
                self._next_turn += 1
                if turn.is_error and not turn.retryable and retry_key is not None:
                    self._sticky_errors[retry_key] = turn
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers=headers,
                    body=body,
                    main=main,
                    turn_index=turn_index,
                    received_at=time.time(),
                )
            )
        logger.debug("scripted-anthropic: %s %s main=%s turn=%s", method, path, main, turn_index)

        if method == "POST" and route == "/v1/messages/count_tokens":
            return self._json(200, {"input_tokens": self._count_tokens(body)})
        if method == "POST" and route == "/v1/messages" and body is not None:
            if turn is None:
                if main:
                    turn = Turn(text=self._done_text)
                else:
                    schema = _structured_schema(body)
                    side = self._side_text if schema is None else json.dumps(_schema_value(schema))
                    turn = Turn(text=side, usage=self._side_usage)
            if turn.delay_s > 0:
                time.sleep(min(turn.delay_s, 60.0))
            if turn.error_status is not None:
                reply = self._json(
                    turn.error_status,
                    {
                        "type": "error",
                        "error": {"type": turn.error_type, "message": turn.error_message},
                        "request_id": _new_id("req"),
                    },
                )
                if not turn.retryable:
                    reply.headers["x-should-retry"] = "false"
                return reply
            model = self._model or str(body.get("model") or "claude-sonnet-4-5")
            message, events = self._render(turn, model)
            if body.get("stream"):
                return _Reply(
                    200,
                    b"".join(_sse(name, data) for name, data in events),
                    "text/event-stream; charset=utf-8",
                )
            return self._json(200, message)
        if route in ("", "/api/hello"):
            return _Reply(200, b"", "text/plain")
        return self._json(
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": f"no route {path}"}},
        )

    @staticmethod
    def _json(status: int, data: dict[str, Any]) -> _Reply:
        return _Reply(status, json.dumps(data).encode(), "application/json")

    @staticmethod
    def _count_tokens(body: dict[str, Any] | None) -> int:
        return max(1, len(json.dumps(body or {})) // 4)

    def _render(
        self, turn: Turn, model: str
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        """Build the full message and its SSE event sequence, the way the real API streams."""
        blocks: list[dict[str, Any]] = []
        if turn.thinking is not None:
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": turn.thinking,
                    "signature": "c2NyaXB0ZWQ=" + uuid.uuid4().hex,
                }
            )
        if turn.text is not None:
            blocks.append({"type": "text", "text": turn.text})
        for call in turn.tool_calls:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id or _new_id("toolu"),
                    "name": call.name,
                    "input": call.input,
                }
            )
        if not blocks:
            blocks.append({"type": "text", "text": ""})
        stop_reason = turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")
        usage = turn.usage.as_dict()
        message: dict[str, Any] = {
            "id": _new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        start_usage = dict(usage, output_tokens=min(1, turn.usage.output_tokens))
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": dict(message, content=[], stop_reason=None, usage=start_usage),
                },
            )
        ]
        for index, block in enumerate(blocks):
            events.extend(self._block_events(index, block))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return message, events

    @staticmethod
    def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        kind = block["type"]
        if kind == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            text: str = block["text"]
            for chunk in _chunks(text):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": chunk},
                    },
                )
        elif kind == "thinking":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
            for chunk in _chunks(block["thinking"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": chunk},
                    },
                )
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                },
            )
        elif kind == "tool_use":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                },
            )
            for chunk in _chunks(json.dumps(block["input"])):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": chunk},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _chunks(text: str, size: int = 16) -> list[str]:
    """Split into several deltas so the CLI's delta accumulation is really exercised."""
    if not text:
        return []
    return [text[i : i + size] for i in range(0, len(text), size)]
