"""Start-up: ``cpl`` imports only what the command it runs needs (asserted on ``sys.modules`` of a
fresh interpreter, not on timings), and the lazy package attributes behave like eager ones."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.cli.parser import COMMANDS

from ..conftest import REPO

# What no command needs just to start: the asyncio machinery, TLS and HTTP, the terminal
# toolkit, the SDK integrations and the logger (the agent side), importlib.metadata.
HEAVY = (
    "asyncio",
    "ssl",
    "urllib.request",
    "http.client",
    "rich",
    "importlib.metadata",
    "claude_parallel_logging.integrations",
    "claude_parallel_logging.logger",
    "claude_parallel_logging.query.aio",
)
# ``--version`` does not even open a database.
HEAVY_FOR_VERSION = (
    *HEAVY,
    "turso",
    "claude_parallel_logging.client",
    "claude_parallel_logging.storage",
    "claude_parallel_logging.write",
    "claude_parallel_logging.query.sessions",
    "claude_parallel_logging.cli.commands.sessions",
)

RUN = """
import contextlib, importlib, io, json, sys
main = importlib.import_module("claude_parallel_logging.cli.main").main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _modules_after(argv: list[str]) -> tuple[int, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(argv)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["out"], set(result["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_version_imports_nothing_heavy() -> None:
    code, out, modules = _modules_after(["--version"])
    assert code == 0 and out == f"cpl {cpl.__version__}\n"
    assert _loaded(modules, HEAVY_FOR_VERSION) == []


def test_sessions_imports_only_what_it_needs(tmp_path: Path) -> None:
    from tests.populate import local_client, populate

    db = tmp_path / "logs.db"
    client = local_client(db)
    populate(client, 3, seed=1)
    client.shutdown(10)
    code, out, modules = _modules_after(["--database", str(db), "sessions", "--json"])
    assert code == 0 and len(json.loads(out)["sessions"]) == 3
    assert _loaded(modules, HEAVY) == []
    others = [f"claude_parallel_logging.cli.commands.{n}" for n, _ in COMMANDS if n != "sessions"]
    assert _loaded(modules, (*others, "claude_parallel_logging.ui")) == []
    # A local read does not need the cloud replicas' code (``cli/replicas.py``: sync, doctor).
    not_for_a_read = (
        "claude_parallel_logging.cli.replicas",
        "claude_parallel_logging.storage.cloud",
        "claude_parallel_logging.storage.reader",
        "claude_parallel_logging.storage.replicas",
    )
    assert _loaded(modules, not_for_a_read) == []


def test_the_command_table_repeats_each_modules_docstring() -> None:
    for name, help_text in COMMANDS:
        module = importlib.import_module(f"claude_parallel_logging.cli.commands.{name}")
        assert (module.__doc__ or "").strip() == help_text, name
        assert callable(module.add_arguments) and callable(module.handle)


def test_version_is_the_installed_one() -> None:
    assert cpl.__version__ == version("claude-parallel-logging")


def test_lazy_package_attributes_behave_like_imports() -> None:
    for package in ("claude_parallel_logging", "claude_parallel_logging.query"):
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None, (package, name)
        assert set(module.__all__) <= set(dir(module))
    namespace: dict[str, object] = {}
    exec("from claude_parallel_logging import *", namespace)
    assert set(cpl.__all__) <= set(namespace)
    from claude_parallel_logging import ConversationLogger, list_sessions
    from claude_parallel_logging.logger import ConversationLogger as direct

    assert ConversationLogger is direct and callable(list_sessions)
