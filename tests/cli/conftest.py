"""Fixtures of the CLI tests: a populated database file, and ``main`` run in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_parallel_logging.cli import main
from tests.cli.helpers import Cli, Result
from tests.populate import (
    Populated,
    populated_database,
)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("cli"), 300, seed=7)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Run ``main(argv)`` in this process and capture what it prints."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
