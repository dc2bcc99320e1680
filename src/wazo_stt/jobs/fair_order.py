"""The fair queue's order: round-robin across tenants, and across senders within a tenant, in SQL.

A *sender* is a job's ``user_uuid``; jobs without one (OpenAI-style requests) are one sender per tenant (API keys
map to tenants, so each key's anonymous traffic is one sender of its tenant). The order is computed from the
queued rows and two small tables of round-robin memory (``tenant_turns``, ``sender_turns``: a claim counter
written at each claim), with window functions that SQLite and PostgreSQL both run:

1. ``round``: a job's rank among its sender's queued jobs (1 = the sender's oldest).
2. ``turn``: its rank within its tenant, ordered by (round, sender last served, seq): each sender of the tenant
   gets one job per round, the least recently served sender first.
3. The queue: ordered by (turn, tenant last served, seq): each tenant gets one job per turn, the least recently
   served tenant first.

Why it holds positions steady: a claim takes the first job and moves its sender and tenant to the end of their
rotations, which can only move other jobs forward; a new job of the same sender always queues behind the
sender's earlier ones. Only a newly arrived job of another sender (or a job put back by a graceful stop or a dead
worker) can pass a waiting job. The cost is a sort of the queued rows per claim and per position read
(bench/queue_store.py measures it at 1 000 and 10 000 queued jobs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.sql import Subquery

from wazo_stt.domain import JobStatus
from wazo_stt.jobs.schema import JobRow, SenderTurn, TenantTurn

# The sender of a job: its user_uuid, or '' (one anonymous sender per tenant).
SENDER = func.coalesce(JobRow.user_uuid, "")


def fair_order() -> Subquery:
    """Every queued job's ``seq`` and ``suspect`` with its sort key ``(turn, tenant_served, seq)``."""
    by_sender = (
        select(
            JobRow.seq,
            JobRow.tenant,
            SENDER.label("sender"),
            JobRow.suspect,
            func.row_number().over(partition_by=(JobRow.tenant, SENDER), order_by=JobRow.seq).label("round"),
        )
        .where(JobRow.status == JobStatus.QUEUED)
        .subquery("by_sender")
    )
    sender_served = func.coalesce(SenderTurn.served, 0)
    joined = by_sender.outerjoin(
        SenderTurn, and_(SenderTurn.tenant == by_sender.c.tenant, SenderTurn.sender == by_sender.c.sender)
    ).outerjoin(TenantTurn, TenantTurn.tenant == by_sender.c.tenant)
    return (
        select(
            by_sender.c.seq,
            func.row_number()
            .over(partition_by=by_sender.c.tenant, order_by=(by_sender.c.round, sender_served, by_sender.c.seq))
            .label("turn"),
            func.coalesce(TenantTurn.served, 0).label("tenant_served"),
            by_sender.c.suspect,
        )
        .select_from(joined)
        .subquery("fair")
    )


def sort_key(fair: Any) -> tuple[Any, Any, Any]:
    return fair.c.turn, fair.c.tenant_served, fair.c.seq


def position_of(seq: Any) -> Any:
    """A scalar subquery: the queue position (1 = next) of the queued job whose ``seq`` is given (a value or a
    correlated column); NULL when that job is not queued. One more window over the fair order: a sort, no join."""
    fair = fair_order()
    ranked = select(fair.c.seq, func.row_number().over(order_by=sort_key(fair)).label("position")).subquery("ranked")
    return select(ranked.c.position).where(ranked.c.seq == seq).scalar_subquery()
