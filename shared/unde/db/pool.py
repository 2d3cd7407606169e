"""One async connection pool per database per process, created at start-up and passed in."""

from __future__ import annotations

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

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
