"""The arena: LRA-style benchmark of attention mechanisms (speed, memory, accuracy)."""
