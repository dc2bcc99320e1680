"""The job queue: jobs (with tenant, lease and progress) and their audio.

Also adapts, in place, a SQLite database made by the first release (``create_all``, no ``alembic_version``):
its jobs table is rebuilt with the new columns and the per-tenant identity constraint, rows and audio kept.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The columns the first release had, copied as they are when its table is adapted.
LEGACY_COLUMNS = (
    "seq, id, status, user_uuid, message_id, source, model, language, response_format, granularities, "
    "created_at, started_at, finished_at, attempts, audio_duration, text, transcript, error"
)


def _jobs_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user_uuid", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8)),
        sa.Column("response_format", sa.String(16), nullable=False),
        sa.Column("granularities", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("audio_duration", sa.Float),
        sa.Column("text", sa.Text),
        sa.Column("transcript", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("progress", sa.Float),
        sa.Column("partial_text", sa.Text),
        sa.UniqueConstraint("tenant", "user_uuid", "message_id", name="uq_jobs_identity"),
    )


def _jobs_indexes() -> None:
    op.create_index("ix_jobs_id", "jobs", ["id"], unique=True)
    op.create_index("ix_jobs_status_seq", "jobs", ["status", "seq"])


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("jobs"):
        _adapt_first_release()
        return
    _jobs_table("jobs")
    _jobs_indexes()
    op.create_table(
        "job_audio",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def _adapt_first_release() -> None:
    # SQLite cannot change a table's constraints: build the new table, copy, swap (foreign keys are off during
    # migrations, so dropping the old table does not cascade to job_audio, which refers to "jobs" by name).
    # Its jobs left 'processing' by the old server get an expired lease, so the first worker takes them back.
    _jobs_table("jobs_new")
    op.execute(
        f"INSERT INTO jobs_new ({LEGACY_COLUMNS}, tenant, lease_expires_at) "
        f"SELECT {LEGACY_COLUMNS}, '', CASE WHEN status = 'processing' THEN 0 END FROM jobs"
    )
    op.drop_table("jobs")
    op.rename_table("jobs_new", "jobs")
    _jobs_indexes()


def downgrade() -> None:
    op.drop_table("job_audio")
    op.drop_table("jobs")
