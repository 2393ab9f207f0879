"""postroom.gateway."""
