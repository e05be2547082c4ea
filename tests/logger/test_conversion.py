"""The writer's conversions that were rewritten for speed agree with their plain forms."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from claude_parallel_logging.payload import iso_utc
from claude_parallel_logging.redact import REDACTED, build_redactor


@given(st.floats(min_value=-2e10, max_value=2.5e11, allow_nan=False))
def test_iso_utc_is_strftime(ts: float) -> None:
    ms = int(ts * 1000)
    sec, frac = divmod(ms, 1000)
    plain = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert iso_utc(ts) == f"{plain}.{frac:03d}Z"


@given(st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), st.text(max_size=300))
def test_github_tokens_are_redacted_in_long_text(prefix: str, filler: str) -> None:
    token = prefix + "A" * 36
    redact = build_redactor(None, True)
    out = redact(f"{filler} {token} {filler}")
    assert token not in out and REDACTED in out
