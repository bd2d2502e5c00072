"""ironclaw.cli."""
