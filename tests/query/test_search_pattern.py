"""The search's LIKE pattern builder: ``%``, ``_`` and ``\\`` in the search text are literal.

Search results alone cannot show this (a final Python check decides), so the patterns are
checked as built and as the real engine applies them."""

from __future__ import annotations

import pytest
import turso

from claude_parallel_logging.query.search import _Matcher
from claude_parallel_logging.query.sql import LIKE as _LIKE
from claude_parallel_logging.query.sql import like_escape as _like_escape


def test_like_escape_makes_metacharacters_literal() -> None:
    assert _like_escape("50%_off\\now") == "50\\%\\_off\\\\now"
    assert _like_escape("plain text") == "plain text"


def test_patterns_of_the_matcher() -> None:
    m = _Matcher.build("100%_done")
    assert m.pattern == m.json_pattern == "%100\\%\\_done%"
    # JSON columns are matched on the JSON-escaped text too: a quote is \" there, a
    # backslash \\, each escaped once more for LIKE; a non-ASCII cased letter is any character
    # (LIKE folds ASCII case only)
    m = _Matcher.build('say "hi" \\ Ärger')
    assert m.pattern == '%say "hi" \\\\ _rger%'
    assert m.json_pattern == '%say \\\\"hi\\\\" \\\\\\\\ _rger%'


@pytest.mark.parametrize(
    ("text", "hit"),
    [("100%_done", True), ("X100%_DONE!", True), ("100xxdone", False), ("1000 done", False)],
)
def test_the_engine_applies_the_pattern_literally(text: str, hit: bool) -> None:
    conn = turso.connect(":memory:")
    try:
        ((got,),) = conn.execute(f"SELECT ? {_LIKE}", (text, _Matcher.build("100%_done").pattern))
    finally:
        conn.close()
    assert bool(got) is hit
