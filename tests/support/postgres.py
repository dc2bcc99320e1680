"""A real PostgreSQL for the tests: a fresh database of their own, dropped at the end.

The server is the one already running on the machine (127.0.0.1:5432, trust auth, user postgres), or the one
``WAZO_TEST_POSTGRES`` names (an admin URL). Where none answers, the tests that need it skip with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator

ADMIN_URL = os.environ.get("WAZO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def unreachable_reason() -> str | None:
    """None when PostgreSQL answers; else the one-line reason to skip."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:
        return f"no PostgreSQL at {ADMIN_URL} ({type(exc).__name__}: {exc})"
    return None


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL (asyncpg driver), drop it afterwards."""
    name = f"wazo_stt_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def empty_tables(url: str) -> None:
    """Between tests that share a database: no job left, sequences back to 1."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute("TRUNCATE jobs, job_audio, tenant_turns, sender_turns RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def rows(url: str, sql: str, *args: object) -> list[tuple]:
    """Read a test database directly, as an operator would with psql."""
    import asyncpg

    async def query() -> list[tuple]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(query())
