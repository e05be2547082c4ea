"""Issue 11, the API traps and broken promises a new user meets: paging past the last page,
search hits used as sessions, missing files and tokens, unknown URL schemes, a generator
stopped right before ``asyncio.run`` returns, ``@logged`` custom agents, binaries from npm,
and the README's read-back example run as written."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.cli import main
from tests.conftest import REPO, SECRET_TOKEN, SyncServer, query

# ----- helpers ----------------------------------------------------------------------------------


def log_sessions(n: int, agent_type: str = "review", status: str = "completed") -> list[str]:
    """``n`` finished sessions through the public API, flushed; their ids, oldest first."""
    ids = []
    for i in range(n):
        lg = cpl.ConversationLogger()
        sid = f"sess-{agent_type}-{i:03d}"
        lg.start_session(cpl.SessionInfo(id=sid, agent_type=agent_type, model="claude-x"))
        lg.log_message("user", f"task {i}: permission denied on /etc/shadow")
        lg.end_session(status, "boom" if status == "error" else None)
        ids.append(sid)
    assert cpl.flush(10)
    return ids


def run(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """A child Python with the package importable and no TURSO_/CPL_ settings of ours."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TURSO_", "CPL_"))}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


# ----- 7: paging stops at the last page -----------------------------------------------------------


def test_readme_paging_idiom_ends_and_iter_sessions_walks_every_page(local_db: Path) -> None:
    ids = log_sessions(5)
    log_sessions(2, agent_type="planning")
    page = cpl.list_sessions(limit=2, agent_type="review")
    seen: list[str] = []
    for _ in range(10):  # the README idiom: next page from the cursor until a page is empty
        if not page:
            break
        seen += [s.id for s in page]
        page = cpl.list_sessions(limit=2, cursor=page.next_cursor)
    else:
        pytest.fail("paging with cursor=page.next_cursor never ended")
    assert seen == ids[::-1]
    # the last page's cursor (None) lists nothing, not every session again
    assert (
        cpl.list_sessions(cursor=None) == [] and cpl.list_sessions(cursor=None).next_cursor is None
    )
    assert [s.id for s in cpl.list_sessions()] != []  # left out: the first page
    assert len(cpl.list_sessions(cursor="")) == 7  # "" is no cursor, as before
    with pytest.raises(ValueError, match="not a time"):  # arguments are still checked
        cpl.list_sessions(cursor=None, since="yesterday")

    assert [s.id for s in cpl.iter_sessions(agent_type="review", page_size=2)] == ids[::-1]
    assert len(list(cpl.iter_sessions())) == 7
    assert [s.id for s in cpl.iter_sessions(agent_type="nobody")] == []

    async def collect() -> list[str]:
        page = await cpl.alist_sessions(limit=3, agent_type="review")
        assert len(page) == 3 and await cpl.alist_sessions(cursor=None) == []
        return [s.id async for s in cpl.aiter_sessions(agent_type="review", page_size=2)]

    assert asyncio.run(collect()) == ids[::-1]


# ----- 8: a search hit is usable as its session ---------------------------------------------------


def test_search_hit_reads_as_the_session_it_found(local_db: Path) -> None:
    (sid,) = log_sessions(1, status="error")
    (hit,) = cpl.search_sessions("PERMISSION denied")
    assert hit.id == sid == hit.session.id
    assert (hit.agent_type, hit.status, hit.model, hit.error_message) == (
        "review", "error", "claude-x", "boom",
    )  # fmt: skip
    assert hit.message_count == 1 and hit.total_tokens == hit.session.total_tokens
    assert hit.where == "message.content" and "permission denied" in hit.snippet
    for name in q.SessionSummary.__dataclass_fields__:
        assert getattr(hit, name) == getattr(hit.session, name)
    assert "agent_type" in dir(hit)
    with pytest.raises(AttributeError):
        hit.no_such_field  # noqa: B018
    assert not hasattr(hit, "_private")
    import copy
    import pickle

    assert copy.copy(hit) == hit and pickle.loads(pickle.dumps(hit)) == hit


# ----- 9: a missing database file is an error, in Python as in the CLI ----------------------------


def test_missing_file_raises_the_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    cpl.configure(database_url=str(missing))
    with pytest.raises(cpl.DatabaseUnavailable) as err:
        cpl.list_sessions()
    with pytest.raises(cpl.DatabaseUnavailable):
        cpl.get_session("abcdef")
    assert main(["--database", str(missing), "sessions"]) == 1
    cli_error = capsys.readouterr().err.strip()
    assert cli_error == f"cpl: error: {err.value}"
    assert f"database file {missing} does not exist" in cli_error
    assert not missing.exists()


# ----- 10: a remote URL without a token says so ---------------------------------------------------


def test_remote_url_without_token_names_the_token(
    monkeypatch: pytest.MonkeyPatch, sync_server: SyncServer, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TURSO_DATABASE_URL", sync_server.url)
    with pytest.raises(cpl.LoggingNotConfigured) as err:
        cpl.list_sessions()
    message = str(err.value)
    assert "TURSO_AUTH_TOKEN" in message and "no auth token" in message
    assert "no database is configured" not in message and sync_server.url in message

    code = main(["doctor"])
    out = capsys.readouterr()
    assert code == 1, out
    lines = out.out.splitlines()
    assert any(
        re.match(r"\[FAIL\] auth token\s+none: a remote database needs one", x) for x in lines
    )
    # every other check ran, and only the token failed
    for name in ("database", "mode", "versions", "connectivity", "replica dir", "pending"):
        assert any(re.match(rf"\[\w+ *\] {name}", x) for x in lines), (name, out.out)
    assert [x for x in lines if x.startswith("[FAIL]")] == [
        x for x in lines if x.startswith("[FAIL] auth token")
    ]
    assert main(["--json", "doctor"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert [c["check"] for c in report["checks"] if c["status"] == "fail"] == ["auth token"]
    assert SECRET_TOKEN not in out.out + out.err


# ----- 11: an unknown URL scheme is a usage error -------------------------------------------------


def test_unknown_scheme_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--database", "foo://bar", "sessions"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cpl sessions: error: --database:")
    for form in ("'foo'", "file path", "file:", "libsql://", "https://", "http://"):
        assert form in err, (form, err)
    assert "does not exist" not in err and not (tmp_path / "foo:").exists()
    assert main(["--database", "foo://bar", "doctor"]) == 2

    with pytest.raises(ValueError, match=r"unknown database URL scheme 'foo'.*libsql://"):
        cpl.configure(database_url="foo://bar?authToken=secret-x")
    try:
        cpl.configure(database_url="foo://bar?authToken=secret-x")
    except ValueError as exc:
        assert "secret-x" not in str(exc)

    monkeypatch.setenv("TURSO_DATABASE_URL", "foo://bar")
    with caplog.at_level(logging.WARNING, logger="claude_parallel_logging"):
        lg = cpl.ConversationLogger()  # logging code never raises: off, with one warning
        lg.start_session(cpl.SessionInfo(id="x", agent_type="a"))
        lg.log_message("user", "hi")
    assert not lg.enabled
    assert "unknown database URL scheme 'foo'" in caplog.text and "logging is off" in caplog.text
    with pytest.raises(cpl.LoggingNotConfigured, match=r"TURSO_DATABASE_URL: unknown .*http://"):
        cpl.list_sessions()
    assert main(["sessions"]) == 2
    assert "TURSO_DATABASE_URL: unknown database URL scheme" in capsys.readouterr().err
    assert not (tmp_path / "foo:").exists()
    # the accepted forms still work
    for url in (str(tmp_path / "a.db"), f"file:{tmp_path / 'b.db'}"):
        cpl.configure(database_url=url)
        log_sessions(1)
    assert len(query(tmp_path / "a.db", "SELECT id FROM sessions")) == 1
    assert len(query(tmp_path / "b.db", "SELECT id FROM sessions")) == 1


# ----- 13: a generator stopped right before asyncio.run returns ends completed --------------------


def test_logged_generator_broken_off_before_asyncio_run_returns_ends_completed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gen.db"
    run(
        """
        import asyncio, sys
        import claude_parallel_logging as cpl
        cpl.configure(database_url=DB)

        @cpl.logged("streamer", instrument=False)
        async def agent(prompt: str):
            for i in range(5):
                yield i

        async def main():
            async for _ in agent("stream please"):
                break  # no aclose(): the loop's shutdown closes it

        asyncio.run(main())

        @cpl.logged("cancelled", instrument=False)
        async def slow(prompt: str):
            yield 1
            await asyncio.sleep(30)
            yield 2

        async def cancel_inside():  # a real cancellation of the agent's own await stays an error
            async def consume():
                async for _ in slow("wait"):
                    pass
            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.2)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        asyncio.run(cancel_inside())
        assert cpl.flush(10)
        """.replace("DB", repr(str(db)))
    )
    rows = dict(
        (agent, (status, err))
        for agent, status, err in query(
            db, "SELECT agent_type, status, error_message FROM sessions"
        )
    )
    assert rows == {"streamer": ("completed", None), "cancelled": ("error", "cancelled")}


# ----- 15: a @logged custom agent records its call -------------------------------------------------


def test_logged_function_without_sdk_calls_records_its_input_and_result(local_db: Path) -> None:
    cpl.configure(redact=lambda s: s.replace("hunter2", "[pw]"))

    @cpl.logged("custom", model="my-model", instrument=False)
    def plan(task: dict[str, Any], prompt: str, retries: int = 1) -> dict[str, Any]:
        return {"steps": ["read", "write"], "password": "hunter2", "task": task}

    @cpl.logged("custom-async", instrument=False)
    async def answer(question: str) -> str:
        return "x" * 300_000

    @cpl.logged("custom-args", instrument=False)
    def score(values: list[int], weight: float) -> None:
        return None

    @cpl.logged("custom-fails", instrument=False)
    def fails(text: str) -> str:
        raise RuntimeError("no luck")

    @cpl.logged("custom-logs", instrument=False)
    def logs_itself(text: str) -> str:
        session = cpl.current_session()
        assert session is not None
        session.logger.log_message("user", f"own prompt: {text}")
        return "own answer"

    plan({"id": 7}, prompt="Plan the hunter2 refactor", retries=2)
    asyncio.run(answer("why?"))
    score([1, 2, 3], weight=0.5)
    with pytest.raises(RuntimeError):
        fails("try it")
    logs_itself("hello")
    assert cpl.flush(10)

    def transcript(agent: str) -> list[tuple[Any, ...]]:
        return query(
            local_db,
            "SELECT m.role, m.content, m.metadata FROM messages m JOIN sessions s"
            " ON s.id = m.session_id WHERE s.agent_type = ? ORDER BY m.sequence",
            (agent,),
        )

    (user, final) = transcript("custom")
    assert user[:2] == ("user", "Plan the [pw] refactor")  # the prompt argument, redacted
    assert json.loads(user[2]) == {
        "logged_call": "test_logged_function_without_sdk_calls_records_its_input_and_result.<locals>.plan"
    }
    assert final[0] == "assistant"
    assert json.loads(final[1]) == {
        "steps": ["read", "write"],
        "password": "[pw]",
        "task": {"id": 7},
    }
    (u, a) = transcript("custom-async")
    assert u[:2] == ("user", "why?")
    assert a[0] == "assistant" and "truncated by claude-parallel-logging: original 300000" in a[1]
    assert len(a[1]) < 270_000
    ((role, content, _),) = transcript("custom-args")  # no string argument; no result (None)
    assert role == "user" and json.loads(content) == {"values": [1, 2, 3], "weight": 0.5}
    assert [r[:2] for r in transcript("custom-fails")] == [("user", "try it")]
    # the body logged its own messages: nothing is added
    assert [r[:2] for r in transcript("custom-logs")] == [
        ("user", "own prompt: hello"),
    ]
    ((status, err),) = query(
        local_db, "SELECT status, error_message FROM sessions WHERE agent_type = 'custom-fails'"
    )
    assert (status, err) == ("error", "RuntimeError: no luck")
    assert cpl.list_sessions(agent_type="custom")[0].message_count == 2


# ----- 14: the test doubles find npm binaries where users install them ----------------------------


@pytest.fixture
def pip_install(tmp_path: Path) -> Path:
    """The package copied out of the repository, as a pip install has it (no ``.tools``)."""
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "claude_parallel_logging",
        site / "claude_parallel_logging",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return site


def test_binaries_are_found_in_node_modules_or_named_with_an_install_hint(
    tmp_path: Path, pip_install: Path
) -> None:
    real_opencode = Path(
        os.environ.get("CPL_OPENCODE_BIN") or REPO / ".tools/node_modules/.bin/opencode"
    )
    real_tursodb = cpl_tursodb = None
    from claude_parallel_logging.testing.tursodb import find_tursodb

    cpl_tursodb = find_tursodb(REPO)
    assert cpl_tursodb is not None and real_opencode.exists()
    real_tursodb = Path(cpl_tursodb)
    env = {
        "PYTHONPATH": str(pip_install),
        "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin",
    }
    probe = """
        from claude_parallel_logging.testing.opencode import opencode_bin
        from claude_parallel_logging.testing.tursodb import find_tursodb, tursodb_bin
        for f in (opencode_bin, tursodb_bin):
            try:
                print("found", f())
            except FileNotFoundError as exc:
                print("missing", exc)
        """
    project = tmp_path / "project"
    work = project / "src" / "deep"
    work.mkdir(parents=True)
    out = run(probe, env=env, cwd=work)
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("missing opencode binary not found")
    assert "npm install opencode-ai" in lines[0] and "./dev" not in lines[0]
    assert lines[1].startswith("missing tursodb binary not found")
    assert "npm install turso" in lines[1] and "./dev" not in lines[1]

    # what `npm install opencode-ai turso` leaves in the project (links to the real binaries)
    (project / "node_modules" / ".bin").mkdir(parents=True)
    (project / "node_modules" / ".bin" / "opencode").symlink_to(real_opencode.resolve())
    cli_dir = project / "node_modules" / "@tursodatabase" / "cli-linux-x64-gnu"
    cli_dir.mkdir(parents=True)
    (cli_dir / "tursodb").symlink_to(real_tursodb.resolve())
    out = run(probe, env=env, cwd=work)
    assert out.split() == [
        "found", str(project / "node_modules" / ".bin" / "opencode"),
        "found", str(cli_dir / "tursodb"),
    ], out  # fmt: skip

    # and the real server starts from there
    out = run(
        """
        from pathlib import Path
        from claude_parallel_logging.testing.tursodb import TursoSyncServer, tursodb_bin
        with TursoSyncServer(tursodb_bin(), Path("s.db"), Path("s.log")) as server:
            print("serving", server.url.startswith("http://127.0.0.1:"))
        """,
        env=env,
        cwd=work,
    )
    assert "serving True" in out


# ----- the README's read-back example, run as written ---------------------------------------------


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("sessions", [0, 1])
def test_readme_read_back_example_runs_on_empty_and_one_session_databases(
    local_db: Path, sessions: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cpl.initialize_schema()  # an empty database: the tables, no session
    ids = log_sessions(sessions, status="error") if sessions else []
    code = readme_block("## Read it back")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    if sessions:
        assert ids[0] in out and "task 0: permission denied" in out
    else:
        assert out == ""
