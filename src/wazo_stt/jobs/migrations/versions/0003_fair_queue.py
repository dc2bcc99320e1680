"""Fair queue and meaningful attempts: round-robin memory per tenant and per sender, and the ``suspect`` mark of
a job that was running beside others when its worker process died.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("suspect", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "tenant_turns",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("served", sa.Integer, nullable=False),
    )
    op.create_table(
        "sender_turns",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("sender", sa.Text, primary_key=True),
        sa.Column("served", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sender_turns")
    op.drop_table("tenant_turns")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("suspect")
