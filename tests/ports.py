"""Port offsets for test stacks: `UNDE_TEST_PORT_SHIFT` moves every stack a test starts, so two
checkouts (e.g. two worktrees) can run their suites side by side on one machine."""

from __future__ import annotations

import os


def port_shift() -> int:
    """Extra offset added to every test stack's fixed port offset (default 0)."""
    return int(os.environ.get("UNDE_TEST_PORT_SHIFT", "0"))
