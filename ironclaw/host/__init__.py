"""ironclaw.host."""
