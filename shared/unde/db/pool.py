"""One async connection pool per database per process, created at start-up and passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from unde.budget import Deadline
from unde.errors import StoreError


def pool_kwargs(statement_timeout_ms: int) -> dict[str, object]:
    """Connection options: a server-side statement timeout bounds every query."""
    return {"options": f"-c statement_timeout={statement_timeout_ms}", "autocommit": True}


async def _register_vector(conn: AsyncConnection) -> None:
    await register_vector_async(conn)


async def open_pool(conninfo: str, *, name: str, min_size: int = 1, max_size: int = 8,
                    statement_timeout_ms: int = 5000, vector: bool = False,
                    open_timeout_s: float = 10.0) -> AsyncConnectionPool:
    """Open a pool; with `vector=True` pgvector types are registered on every connection."""
    pool = AsyncConnectionPool(
        conninfo,
        name=name,
        min_size=min_size,
        max_size=max_size,
        kwargs=pool_kwargs(statement_timeout_ms),
        configure=_register_vector if vector else None,
        open=False,
        timeout=open_timeout_s,
    )
    try:
        await pool.open(wait=min_size > 0, timeout=open_timeout_s)
    except Exception as exc:
        await pool.close()
        raise StoreError(f"cannot connect to the {name} database: {exc}") from exc
    return pool


@asynccontextmanager
async def budgeted(pool: AsyncConnectionPool, deadline: Deadline,
                   cap_s: float) -> AsyncIterator[AsyncConnection[Any]]:
    """A connection waited for at most `cap_s` within `deadline`, in a transaction whose
    statements the server cancels when the deadline passes (`SET LOCAL statement_timeout`).
    Raises `BudgetSpent` when nothing is left, psycopg errors for the database's failures."""
    async with pool.connection(timeout=deadline.timeout(cap_s)) as conn, conn.transaction():
        left_ms = max(1, int(deadline.remaining() * 1000))
        await conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{left_ms}ms",))
        yield conn
