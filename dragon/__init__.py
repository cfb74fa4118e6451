"""Dragon on trio: run ordinary Python programs in a runtime of managed processes and shm channels."""

__version__ = "0.1.0"
