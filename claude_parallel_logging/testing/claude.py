"""Run the real bundled Claude Code CLI offline against :class:`ScriptedAnthropicServer`.

``claude_agent_sdk`` is an optional extra, so it is imported inside functions only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions

    from claude_parallel_logging.testing.anthropic import ScriptedAnthropicServer

__all__ = [
    "DEFAULT_ALLOWED_TOOLS",
    "SCRIPTED_MODEL",
    "claude_cli_env",
    "scripted_claude_options",
]

# A real model id, so the CLI prices usage with its list-price table (an unknown
# name is still priced, but with a fallback rate that is not documented).
SCRIPTED_MODEL = "claude-sonnet-4-5"
DEFAULT_ALLOWED_TOOLS: tuple[str, ...] = ("Bash", "Read", "Write", "Edit")

# Inherited variables that would send the CLI to another provider or credential.
# ``ClaudeAgentOptions.env`` is merged over ``os.environ`` and cannot delete keys,
# so they are blanked instead.
_BLANKED_ENV: tuple[str, ...] = (
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_BETAS",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_ENABLE_TELEMETRY",
    "CLAUDE_CODE_SUBAGENT_MODEL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def claude_cli_env(
    base_url: str, home_dir: str | os.PathLike[str], *, model: str = SCRIPTED_MODEL
) -> dict[str, str]:
    """Environment that keeps the CLI on the local server, isolated and quick to fail.

    Besides the base URL and a dummy key: a private HOME/config dir (no user
    settings, sessions land in the temp dir), every non-essential network call
    switched off (no ``HEAD /api/hello`` probe, no title-generation model call),
    bounded retries/timeouts so an error or hang ends the run in seconds, and the
    helper-model names pinned to the scripted model.
    """
    home = Path(home_dir)
    config_dir = home / ".claude"
    config_dir.mkdir(parents=True, exist_ok=True)
    no_proxy = ",".join(p for p in ("127.0.0.1", "localhost", os.environ.get("NO_PROXY", "")) if p)
    env: dict[str, str] = dict.fromkeys(_BLANKED_ENV, "")
    env.update(
        {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "test-key",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_UPDATES": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "DISABLE_COST_WARNINGS": "1",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
            "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
            "CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL": "1",
            # Retryable (5xx/529 without x-should-retry: false) errors: 2 retries, ~2 s.
            "CLAUDE_CODE_MAX_RETRIES": "2",
            "API_TIMEOUT_MS": "30000",
            "ANTHROPIC_SMALL_FAST_MODEL": model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
    )
    return env


def scripted_claude_options(
    server: ScriptedAnthropicServer | str,
    tmp_path: str | os.PathLike[str],
    **overrides: Any,
) -> ClaudeAgentOptions:
    """Options for ``query``/``ClaudeSDKClient`` that run the real CLI on the script.

    Tools are granted with ``allowed_tools`` because the CLI refuses
    ``bypassPermissions`` when running as root. ``env`` in ``overrides`` is merged
    over the generated environment rather than replacing it.
    """
    from claude_agent_sdk import ClaudeAgentOptions

    base_url = server if isinstance(server, str) else server.url
    root = Path(tmp_path)
    home = root / "home"
    cwd = root / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    model = str(overrides.get("model") or SCRIPTED_MODEL)
    env = claude_cli_env(base_url, home, model=model)
    env.update(overrides.pop("env", None) or {})
    kwargs: dict[str, Any] = {
        "env": env,
        "cwd": str(cwd),
        "allowed_tools": list(DEFAULT_ALLOWED_TOOLS),
        "model": model,
        "max_turns": 8,
    }
    kwargs.update(overrides)
    return ClaudeAgentOptions(**kwargs)
