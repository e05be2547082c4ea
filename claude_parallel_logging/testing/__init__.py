"""Offline test doubles for your own instrumented agents.

* ``testing.anthropic.ScriptedAnthropicServer`` — a scripted Anthropic Messages API on 127.0.0.1
  that the real Claude Code CLI talks to (``testing.claude.scripted_claude_options``).
* ``testing.openai_compat.ScriptedOpenAIServer`` — a scripted OpenAI-compatible server, and
  ``testing.opencode.OpencodeServer`` which runs the real ``opencode serve`` against it.
* ``testing.recorded`` — real CLI message streams recorded to JSONL and parsed back.
* ``testing.tursodb.TursoSyncServer`` — the real Turso sync server (``tursodb`` from the npm
  package ``turso``) on 127.0.0.1, to test cloud mode without a network.

Import the submodule you need; nothing here imports an SDK until you use it.
"""
