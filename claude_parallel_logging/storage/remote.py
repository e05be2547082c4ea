"""Talking to the remote (Turso Cloud or ``tursodb --sync-server``) with time limits.

pyturso's sync calls send HTTP through ``urllib`` without a timeout, so a remote that accepts a
connection and never answers would hang a push for ever. Everything here bounds every request,
and raises what the store can count, warn about and retry.
"""

from __future__ import annotations

import json
from typing import Any

from .._log import log
from ..config import TursoConfig


def http_base(url: str) -> str:
    """The HTTP(S) address of a remote URL (``libsql://`` means HTTPS, as in pyturso)."""
    url = url.split("?", 1)[0]
    for prefix, scheme in (
        ("libsql://", "https://"), ("turso://", "https://"), ("wss://", "https://"), ("ws://", "http://"),
    ):  # fmt: skip
        if url.startswith(prefix):
            return scheme + url[len(prefix) :]
    return url


def remote_schema_version(config: TursoConfig, timeout: float) -> int:
    """The remote's schema version (0: empty), by one SQL-over-HTTP request (``/v2/pipeline``).

    That endpoint is what pyturso's push itself uses, so every server we can push to answers it
    (Turso Cloud and ``tursodb --sync-server``). It costs one round trip, where bootstrapping a
    replica would download the whole database.
    """
    sqls = (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
        "SELECT MAX(version) FROM schema_version",  # an error result when the table is missing
    )
    body = {
        "baton": None,
        "requests": [{"type": "execute", "stmt": {"sql": s, "want_rows": True}} for s in sqls],
    }
    import urllib.error  # here, not at the top: 40 ms of start-up that local mode never needs
    import urllib.request

    req = urllib.request.Request(
        http_base(config.url).rstrip("/") + "/v2/pipeline",
        data=json.dumps(body).encode(),
        method="POST",
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", "claude-parallel-logging")
    if config.auth_token:
        req.add_header("Authorization", f"Bearer {config.auth_token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            results = json.loads(resp.read())["results"]
    except urllib.error.HTTPError as exc:
        raise ConnectionError(f"schema check: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"network error: {getattr(exc, 'reason', None) or exc}") from None

    def value(i: int) -> Any:
        result = results[i]
        if result.get("type") != "ok":
            message = (result.get("error") or {}).get("message", "unknown error")
            raise RuntimeError(f"the remote did not answer a schema query: {message}")
        rows = result["response"]["result"]["rows"]
        cell = rows[0][0] if rows and rows[0] else None
        return None if not cell or cell.get("type") == "null" else cell.get("value")

    if not int(value(0) or 0):
        return 0
    return int(value(1) or 0)


def _sync_internals() -> Any:
    """pyturso's IO plumbing that ``_sync_run`` reuses, or ``None`` if it is not there."""
    try:
        from turso import lib_sync

        for name in (
            "PyTursoSyncIoItemRequestKind", "PyTursoAsyncOperationResultKind",
            "_process_full_read_item", "_process_full_write_item", "_map_turso_exception",
        ):  # fmt: skip
            getattr(lib_sync, name)
        return lib_sync
    except (ImportError, AttributeError):
        return None


def _sync_run(conn: Any, op: Any, timeout: float) -> Any:
    """Drive one pyturso sync operation to its end with a timeout on every HTTP request.

    ``ConnectionSync.push()``/``pull()`` send their requests with ``urllib`` and no timeout, so a
    remote that accepts the connection and never answers hangs them for ever, and pyturso has no
    option for it. This is their loop (``turso.lib_sync._run_op``) with ``urlopen(timeout=...)``.
    A request that fails poisons the operation, which then raises, and can simply be retried: the
    server records the last change it applied from each client, so nothing is applied twice.
    """
    lib_sync = _sync_internals()
    sync, ctx = conn._sync, conn._http_ctx
    kinds = lib_sync.PyTursoSyncIoItemRequestKind
    for _ in range(10_000_000):  # one round per wait for IO
        try:
            finished = op.resume()
        except Exception as exc:
            raise lib_sync._map_turso_exception(exc) from None
        if finished:
            result = op.take_result()
            if result.kind == lib_sync.PyTursoAsyncOperationResultKind.Changes:
                return result.changes
            return None
        for _ in range(100_000):
            item = sync.take_io_item()
            try:
                if item is None:
                    break
                req = item.request()
                if req.kind == kinds.Http and req.http is not None:
                    _sync_http(item, req.http, ctx, op, timeout)
                elif req.kind == kinds.FullRead and req.full_read is not None:
                    lib_sync._process_full_read_item(item, req.full_read)
                elif req.kind == kinds.FullWrite and req.full_write is not None:
                    lib_sync._process_full_write_item(item, req.full_write)
                else:
                    item.poison("unknown io request kind")
            except Exception as exc:
                try:
                    item.poison(f"io processing error: {exc}")
                except Exception:
                    pass
            finally:
                sync.step_io_callbacks()
    raise RuntimeError("sync operation did not finish")


def _sync_http(item: Any, req: Any, ctx: Any, op: Any, timeout: float) -> None:
    """One HTTP request of a sync operation, its response streamed back to the engine."""
    import urllib.error  # see remote_schema_version
    import urllib.request

    url = (ctx.base_url() or req.url or "").rstrip("/")
    path = req.path or ""
    request = urllib.request.Request(
        url=url + ("" if not path or path.startswith("/") else "/") + path,
        data=bytes(req.body) if req.body is not None else None,
        method=req.method,
    )
    has_auth = False
    for header in req.headers or ():
        request.add_header(str(header[0]), str(header[1]))
        has_auth = has_auth or str(header[0]).lower() == "authorization"
    token = ctx.token()
    if token is not None and not has_auth:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("User-Agent", ctx.client_name)
    try:
        resp: Any = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        resp = exc  # a status and a body, streamed back like a success
    except urllib.error.URLError as exc:
        item.poison(f"network error: {exc.reason}")
        return
    except Exception as exc:
        item.poison(f"network error: {exc}")
        return
    try:
        with resp:
            item.status(int(getattr(resp, "status", None) or resp.getcode() or 200))
            for _ in range(10_000_000):
                chunk = resp.read(64 * 1024)
                if not chunk:
                    break
                item.push_buffer(chunk)
                op.resume()  # the engine consumes the chunk; it cannot finish mid-response
        item.done()
    except Exception as exc:
        item.poison(f"network error: {exc}")


def timed_push(conn: Any, timeout: float) -> None:
    """``conn.push()`` that gives up when the remote is silent for ``timeout`` seconds.

    Without pyturso's internals (another version) it is plain ``conn.push()``: still off the
    writer thread, only without the timeout.
    """
    if _sync_internals() is None or not hasattr(conn, "_sync"):
        conn.push()
        return
    _sync_run(conn, conn._sync.push_changes(), timeout)


def timed_pull(conn: Any, timeout: float) -> None:
    """``conn.pull()`` that gives up when the remote is silent for ``timeout`` seconds."""
    if _sync_internals() is None or not hasattr(conn, "_sync"):
        conn.pull()
        return
    changes = _sync_run(conn, conn._sync.wait_changes(), timeout)
    if changes is not None and not changes.empty():
        _sync_run(conn, conn._sync.apply_changes(changes), timeout)


# A read replica's WAL above this is checkpointed after a pull, so that the next process opens
# it in milliseconds (opening scans the WAL: ~40 ms per 50 MB).
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024


def pull_and_compact(conn: Any, timeout: float) -> int | None:
    """``timed_pull``, then a checkpoint when the WAL has grown (a failed one is harmless).

    Returns the bytes received from the remote since ``conn`` was opened (``None``: unknown)."""
    timed_pull(conn, timeout)
    received: int | None = None
    try:
        stats = conn.stats()
        received = int(stats.network_received_bytes)
        if int(stats.main_wal_size) > CHECKPOINT_WAL_BYTES:
            if _sync_internals() is None or not hasattr(conn, "_sync"):
                conn.checkpoint()
            else:
                _sync_run(conn, conn._sync.checkpoint(), timeout)
    except Exception as exc:  # the replica stays usable; the next pull tries again
        log.debug("read replica checkpoint failed: %s", exc)
    return received
