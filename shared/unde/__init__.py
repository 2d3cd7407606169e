"""UNDE Recognition: the project's common package shared by every function."""

__version__ = "0.1.0"
