"""PhysGM core library: pure functions and torch modules (no Ray, no I/O services)."""
__version__ = "0.1.0"
