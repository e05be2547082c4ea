"""claude-parallel-logging: record every Claude Agent SDK and OpenCode conversation in Turso.

Writes are fire-and-forget: the agent's code only enqueues; a background writer batches into
the database. See README.md for the set-up and the guarantees.
"""

from .client import TursoClient, aflush, flush, get_turso_client, shutdown, stats
from .config import Settings, TursoConfig, configure, get_turso_config, reset_configuration
from .integrations.instrument import instrument, uninstrument
from .integrations.session import LoggedSession, current_session, logged, logged_session
from .logger import ConversationLogger, SessionInfo
from .schema import SCHEMA_VERSION, SchemaVersionError, initialize_schema

__all__ = [
    "SCHEMA_VERSION",
    "ConversationLogger",
    "LoggedSession",
    "SchemaVersionError",
    "SessionInfo",
    "Settings",
    "TursoClient",
    "TursoConfig",
    "aflush",
    "configure",
    "current_session",
    "flush",
    "get_turso_client",
    "get_turso_config",
    "initialize_schema",
    "instrument",
    "logged",
    "logged_session",
    "reset_configuration",
    "shutdown",
    "stats",
    "uninstrument",
]

__version__ = "0.1.0"
