"""postroom.outbound."""
