"""Claude Agent SDK instrumentation: the patch table (what is wrapped), applied by ``install``.

* ``InternalClient.process_query``: what every ``query()`` runs, so a ``query`` imported before
  ``instrument()`` is logged too (:mod:`._wrappers`);
* ``ClaudeSDKClient.connect/query/receive_messages/disconnect/__aexit__``: class attributes, so
  existing imports of the class are covered (:mod:`.client`);
* the SDK's ``parse_message`` (both import sites), only to read the CLI's per-turn usage delta
  that the parsed ``ResultMessage`` leaves out. Optional: an SDK that moved it still works.

The registry (``integrations/instrument.py``) loads this module by name, calls ``install`` with
its ``patch``, and restores every original at ``uninstrument()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._log import log
from . import _wrappers, client

if TYPE_CHECKING:
    from ..instrument import Patcher

_CLIENT = "claude_agent_sdk.client"
_INTERNAL = "claude_agent_sdk._internal.client"

PATCHES = (
    (_INTERNAL, "InternalClient.process_query", _wrappers.process_query),
    (_CLIENT, "ClaudeSDKClient.connect", client.connect),
    (_CLIENT, "ClaudeSDKClient.query", client.query),
    (_CLIENT, "ClaudeSDKClient.receive_messages", client.receive_messages),
    (_CLIENT, "ClaudeSDKClient.disconnect", client.disconnect),
    (_CLIENT, "ClaudeSDKClient.__aexit__", client.aexit),
)
OPTIONAL_PATCHES = (
    ("claude_agent_sdk._internal.message_parser", "parse_message", _wrappers.parse_message),
    (_INTERNAL, "parse_message", _wrappers.parse_message),
)


def install(patch: Patcher) -> None:
    for module, path, wrapper in PATCHES:
        patch(module, path, wrapper)
    for module, path, wrapper in OPTIONAL_PATCHES:
        try:
            patch(module, path, wrapper)
        except Exception:
            log.debug("%s.%s not patched", module, path, exc_info=True)
