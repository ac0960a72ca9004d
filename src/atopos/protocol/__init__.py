"""Sans-I/O wire formats and state machines."""
