"""postroom.queue."""
