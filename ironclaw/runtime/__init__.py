"""ironclaw.runtime: the generic Trio actor toolkit (supervisors, child processes, event bus)."""
