"""Reads answered on the remote: a small read-only connection over SQL-over-HTTP (Hrana's
``/v2/pipeline``, which Turso Cloud and ``tursodb --sync-server`` both serve: pyturso's push
uses it).

Why: the first read on a machine would otherwise pull the whole database into a read replica
(gigabytes for a team's logs) to show fifty sessions. Sent to the remote, a read costs its few
statements' rows. What the query layer uses of a DB-API connection is here: ``execute(sql,
params)`` and a cursor with ``fetchone``/``fetchall``/``fetchmany``/``description``; plus
``execute_all`` (several statements in one round trip) and ``prefetch``. Every request is
bounded (silence and total time), errors are :class:`DatabaseUnavailable` naming the database
without its token, and the HTTP connection is kept alive between the statements of a read.

Each statement runs on its own on the remote (``tursodb`` keeps no stream between requests):
it sees every row pushed before it ran, but two statements of one read are not one snapshot.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..config import TursoConfig
from ..errors import DatabaseUnavailable, one_line
from .remote import http_base

# A request whose response takes longer than this many times the silence timeout in all is
# given up, even if bytes keep trickling in.
TOTAL_FACTOR = 4.0
_INT64 = (-(2**63), 2**63 - 1)

Statement = tuple[str, Sequence[Any]]


def encode_value(value: Any) -> dict[str, Any]:
    """A Python value as a Hrana value (integers travel as strings: JSON numbers lose bits)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "integer", "value": "1" if value else "0"}
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise OverflowError(f"integer {value} does not fit in 64 bits")
        return {"type": "integer", "value": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} cannot be sent to the remote (not a finite number)")
        return {"type": "float", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


def decode_value(cell: Any) -> Any:
    """A Hrana value as Python: ``int``, ``float``, ``str``, ``bytes`` or ``None``."""
    kind = cell.get("type") if isinstance(cell, dict) else None
    if kind == "integer":
        return int(cell["value"])
    if kind == "float":
        return float(cell["value"])
    if kind == "text":
        return str(cell["value"])
    if kind == "blob":
        raw = cell.get("base64") or ""
        return base64.b64decode(raw + "=" * (-len(raw) % 4))
    if kind == "null":
        return None
    raise ValueError(f"unknown value from the remote: {str(cell)[:80]}")


class RemoteCursor:
    """The rows of one statement, already received (``fetchmany`` pages through them)."""

    def __init__(self, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.description: tuple[tuple[str, None, None, None, None, None, None], ...] | None = (
            tuple((name, None, None, None, None, None, None) for name in columns)
            if columns
            else None
        )
        self.rowcount = -1
        self._rows = rows
        self._at = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        out = self._rows[self._at : self._at + max(0, size)]
        self._at += len(out)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        out = self._rows[self._at :]
        self._at = len(self._rows)
        return out

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for _ in range(len(self._rows)):
            row = self.fetchone()
            if row is None:
                return
            yield row

    def close(self) -> None:
        self._rows, self._at = [], 0


class RemoteConnection:
    """A read-only connection whose statements run on the remote (see the module docstring)."""

    answers_remotely = True

    def __init__(self, config: TursoConfig, timeout: float) -> None:
        from urllib.parse import urlsplit  # here: only cloud reads need it (start-up time)

        self.label = config.display
        self.timeout = timeout
        self._token = config.auth_token
        parts = urlsplit(http_base(config.url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DatabaseUnavailable(f"cannot read {self.label}: not an http(s) address")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/v2/pipeline"
        self._http: Any = None
        self._baton: str | None = None  # a stream the remote keeps for us (Turso Cloud), if any
        self._prefetched: dict[tuple[str, tuple[Any, ...]], RemoteCursor] = {}
        self.requests = 0
        self.bytes_received = 0

    # ----- the DB-API surface the query layer uses --------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> RemoteCursor:
        key = (sql, tuple(params))
        found = self._prefetched.pop(key, None)
        if found is not None:
            return found
        return self.execute_all([(sql, params)])[0]

    def execute_all(self, statements: Sequence[Statement]) -> list[RemoteCursor]:
        """Every statement's rows, in one round trip; the first failing one raises."""
        if not statements:
            return []
        results = self._pipeline(statements)
        return [self._cursor(result) for result in results]

    def prefetch(self, statements: Sequence[Statement]) -> list[Any]:
        """Run ``statements`` now, in one round trip, keeping each result for the next
        ``execute`` of the same statement (once); returns each result, or the exception it
        would raise."""
        out: list[Any] = []
        for (sql, params), result in zip(statements, self._pipeline(statements)):
            try:
                cursor = self._cursor(result)
            except DatabaseUnavailable as exc:
                out.append(exc)
                continue
            self._prefetched[(sql, tuple(params))] = cursor
            out.append(cursor)
        return out

    def database_size(self, prefetch: Sequence[Statement] = ()) -> int | None:
        """The remote database's size in bytes (page count times page size), in one round trip
        that also runs ``prefetch`` (kept for the read's first statements); ``None`` when the
        remote does not say."""
        sizes = [("PRAGMA page_count", ()), ("PRAGMA page_size", ())]
        found = self.prefetch([*sizes, *prefetch])
        values: list[int] = []
        for (sql, params), cursor in zip(sizes, found):
            self._prefetched.pop((sql, tuple(params)), None)
            row = None if isinstance(cursor, BaseException) else cursor.fetchone()
            if row is None or not isinstance(row[0], int):
                return None
            values.append(row[0])
        return values[0] * values[1]

    def commit(self) -> None:
        """Nothing to commit: every statement ran on its own."""

    def rollback(self) -> None:
        """Nothing to roll back (see ``commit``)."""

    def close(self) -> None:
        self._prefetched.clear()
        if self._baton is not None and self._http is not None:
            try:  # let the remote free the stream now rather than at its idle timeout
                self._send({"baton": self._baton, "requests": [{"type": "close"}]})
            except DatabaseUnavailable:
                pass
        self._drop()

    def __enter__(self) -> RemoteConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the protocol -----------------------------------------------------------------------

    def _cursor(self, result: Any) -> RemoteCursor:
        if not isinstance(result, dict) or result.get("type") != "ok":
            error = (result or {}).get("error") if isinstance(result, dict) else None
            message = (error or {}).get("message") or "unknown error"
            raise DatabaseUnavailable(
                f"the remote {self.label} could not run a query: {self._clean(message)}"
            )
        body = result.get("response", {}).get("result", {})
        columns = [str(c.get("name") or "") for c in body.get("cols") or ()]
        rows = [tuple(decode_value(cell) for cell in row) for row in body.get("rows") or ()]
        return RemoteCursor(columns, rows)

    def _pipeline(self, statements: Sequence[Statement]) -> list[Any]:
        requests = [
            {
                "type": "execute",
                "stmt": {
                    "sql": sql,
                    "args": [encode_value(v) for v in params],
                    "want_rows": True,
                },
            }
            for sql, params in statements
        ]
        answer = self._send({"baton": self._baton, "requests": requests})
        baton = answer.get("baton")
        self._baton = baton if isinstance(baton, str) and baton else None
        results = answer.get("results")
        if not isinstance(results, list) or len(results) != len(statements):
            raise DatabaseUnavailable(f"the remote {self.label} sent an answer that is not Hrana")
        return results

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        """One POST to ``/v2/pipeline``; a kept-alive connection the remote closed meanwhile
        is opened again once (reads can be repeated)."""
        import http.client  # here: only cloud reads need it (start-up time)

        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        for attempt in range(2):
            reused = self._http is not None
            try:
                return self._post(data)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                stale = reused and attempt == 0 and not isinstance(exc, TimeoutError)
                if stale and _is_closed_connection(exc):
                    continue
                raise self._network_error(exc) from None
        raise DatabaseUnavailable(f"cannot reach {self.label}")  # unreachable

    def _post(self, data: bytes) -> dict[str, Any]:
        import http.client  # here: only cloud reads need it (start-up time)

        deadline = time.monotonic() + self.timeout * TOTAL_FACTOR
        if self._http is None:
            if self._https:
                import ssl

                self._http = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout,
                    context=ssl.create_default_context(),
                )  # fmt: skip
            else:
                self._http = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "claude-parallel-logging",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self._http.request("POST", self._path, body=data, headers=headers)
        resp = self._http.getresponse()
        chunks: list[bytes] = []
        for _ in range(100_000_000):  # bounded by the deadline long before
            chunk = resp.read(256 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            if time.monotonic() > deadline:
                self._drop()
                raise TimeoutError(f"the answer took longer than {self.timeout * TOTAL_FACTOR:g} s")
        raw = b"".join(chunks)
        self.requests += 1
        self.bytes_received += len(raw)
        if resp.status >= 400:
            if resp.will_close:
                self._drop()
            excerpt = self._clean(raw[:200].decode("utf-8", "replace"))
            if resp.status in (401, 403):
                raise DatabaseUnavailable(
                    f"{self.label} refused the auth token (HTTP {resp.status})"
                )
            raise DatabaseUnavailable(
                f"{self.label} answered HTTP {resp.status} {resp.reason}: {excerpt}"
            )
        if resp.will_close:
            self._drop()
        try:
            answer = json.loads(raw)
        except ValueError:
            raise DatabaseUnavailable(
                f"the remote {self.label} sent an answer that is not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise DatabaseUnavailable(f"the remote {self.label} sent an answer that is not Hrana")
        return answer

    def _drop(self) -> None:
        if self._http is not None:
            try:
                self._http.close()
            except OSError:
                pass
        self._http = None
        self._baton = None  # a stream lives on one connection

    def _network_error(self, exc: BaseException) -> DatabaseUnavailable:
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):
            reason = (
                str(exc)
                if "longer than" in str(exc)
                else f"the remote did not answer within {self.timeout:g} s"
            )
        else:
            reason = one_line(exc)
        return DatabaseUnavailable(f"cannot reach {self.label}: {self._clean(reason)}")

    def _clean(self, text: str) -> str:
        """One line, never the token (a server could echo a header back)."""
        text = " ".join(str(text).split())[:300]
        if self._token:
            text = text.replace(self._token, "<token>")
        return text


def _is_closed_connection(exc: BaseException) -> bool:
    """The remote closed a kept-alive connection before our request (not a failure of it)."""
    import http.client

    return isinstance(
        exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
    ) or isinstance(exc, http.client.BadStatusLine)
