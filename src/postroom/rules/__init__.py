"""postroom.rules."""
