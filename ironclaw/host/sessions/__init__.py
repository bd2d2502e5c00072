"""Live sessions: one actor each, with its sandbox, doorbell, model socket and tail."""

from ironclaw.host.sessions.session_actor import SessionActor as SessionActor
from ironclaw.host.sessions.session_actor import SessionDeps as SessionDeps
from ironclaw.host.sessions.session_actor import SessionSettings as SessionSettings

from .manager import Sessions as Sessions
from .progress import SessionProgress as SessionProgress
