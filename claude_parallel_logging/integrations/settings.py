"""The agent types sessions created by instrumentation are logged under.

Set by ``instrument()`` and read by both SDK integrations; a neutral module of its own so that
neither integration reaches into the patch registry (nor into the other integration).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AgentTypes:
    """``agent_type`` of the sessions instrumentation opens by itself, per SDK."""

    claude: str = "claude"
    opencode: str = "opencode"


agent_types = AgentTypes()
