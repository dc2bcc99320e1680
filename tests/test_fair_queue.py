"""The fair queue (issue 14), on SQLite and PostgreSQL: round-robin across tenants and across senders within a
tenant, so one sender cannot starve the others, and queue positions that follow the claim order exactly."""

from __future__ import annotations

import random

import pytest

from wazo_stt.domain import JobStatus
from wazo_stt.jobs.records import NewJob
from wazo_stt.jobs.store import JobStore


def job(user: str | None, tenant: str = "") -> NewJob:
    return NewJob(audio=b"RIFF....", audio_duration=1.0, model="m", response_format="json", user_uuid=user,
                  message_id=None, tenant=tenant)


async def submit(store: JobStore, user: str | None, tenant: str = "", n: int = 1) -> list[str]:
    return [(await store.submit(job(user, tenant))).job.id for _ in range(n)]


async def claim_all(store: JobStore, labels: dict[str, str]) -> list[str]:
    order = []
    while (claimed := await store.claim_next("w")) is not None:
        order.append(labels[claimed.id])
        assert await store.fail(claimed.id, "w", "done")  # finished: the next claim is free to run
    return order


@pytest.fixture
def roomy(store):
    store.max_queue_size = 1000
    return store


async def test_senders_of_a_tenant_are_served_round_robin(roomy):
    labels = {}
    for user, n in (("a", 4), ("b", 2), (None, 1)):
        labels |= {job_id: f"{user}{i}" for i, job_id in enumerate(await submit(roomy, user, n=n))}
    # Each sender once per round, oldest job first; the anonymous requests (no user_uuid) are one sender.
    assert await claim_all(roomy, labels) == ["a0", "b0", "None0", "a1", "b1", "a2", "a3"]


async def test_tenants_are_served_round_robin_then_their_senders(roomy):
    labels = {}
    for tenant, user, n in (("t1", "u1", 3), ("t1", "u2", 3), ("t2", "v", 2), ("t3", "w", 1)):
        ids = await submit(roomy, user, tenant, n)
        labels |= {job_id: f"{tenant}/{user}#{i}" for i, job_id in enumerate(ids)}
    # t1's two users do not get twice t2's share: a turn per tenant, and within t1 a turn per user.
    assert await claim_all(roomy, labels) == [
        "t1/u1#0", "t2/v#0", "t3/w#0", "t1/u2#0", "t2/v#1", "t1/u1#1", "t1/u2#1", "t1/u1#2", "t1/u2#2",
    ]


async def test_a_sender_with_a_backlog_does_not_delay_a_newcomer_beyond_one_turn(roomy):
    bombs = await submit(roomy, "attacker", n=20)
    running = await roomy.claim_next("w")
    assert running.id == bombs[0]
    (victim,) = await submit(roomy, "victim")
    # The attacker was served last: the victim's voicemail is next, not 20th.
    assert (await roomy.snapshot(victim)).queue_position == 1
    assert await roomy.complete(running.id, "w", _transcript())
    assert (await roomy.claim_next("w")).id == victim


async def test_positions_follow_the_claim_order_and_never_go_backwards(roomy):
    """A random mix of submissions (3 tenants, 5 senders) and claims: at every step the queued jobs' positions are
    exactly 1..n, the next claim takes position 1, each submission was told the position the snapshot reads, and a
    job's position only ever grows when another sender's job just arrived (by at most one per arrival)."""
    rng = random.Random(14)
    senders = [("t1", "a"), ("t1", "b"), ("t1", None), ("t2", "c"), ("t3", "d")]
    last: dict[str, int] = {}
    for _ in range(60):
        arrived = None
        if rng.random() < 0.55 or not last:
            tenant, user = rng.choice(senders)
            submission = await roomy.submit(job(user, tenant))
            arrived = submission.job.id
            assert submission.queue_position == (await roomy.snapshot(arrived)).queue_position
        else:
            claimed = await roomy.claim_next("w")
            assert last[claimed.id] == 1, "the claim took the job at position 1"
            await roomy.fail(claimed.id, "w", "done")
        positions = {}
        for job_id in list(last) + ([arrived] if arrived else []):
            snapshot = await roomy.snapshot(job_id)
            if snapshot.job.status is JobStatus.QUEUED:
                positions[job_id] = snapshot.queue_position
        assert sorted(positions.values()) == list(range(1, len(positions) + 1))
        for job_id, position in positions.items():
            if job_id in last:
                assert position <= last[job_id] + (1 if arrived else 0), "a position went backwards"
                if arrived is None:
                    assert position == last[job_id] - 1, "a claim moves every waiting job forward by one"
        last = positions


def _transcript():
    from tests.test_store import TRANSCRIPT

    return TRANSCRIPT
