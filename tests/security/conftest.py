"""Security tests reuse the contract tests' in-process functions (`target` fixture)."""

from tests.contracts.conftest import target

__all__ = ["target"]
