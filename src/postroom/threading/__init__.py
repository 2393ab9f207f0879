"""postroom.threading."""
