"""postroom.storage."""
