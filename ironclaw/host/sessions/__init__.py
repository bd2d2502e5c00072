"""Live sessions: one actor each, with its sandbox, doorbell, model socket and tail."""

from .actor import SessionActor as SessionActor
from .actor import SessionDeps as SessionDeps
from .actor import SessionSettings as SessionSettings
from .manager import Sessions as Sessions
from .progress import SessionProgress as SessionProgress
