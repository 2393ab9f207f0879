"""inbound auth_results: SPF/DKIM/DMARC/ARC verdicts recorded on every inbound message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:55:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.add_column(sa.Column("auth_results", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.drop_column("auth_results")
