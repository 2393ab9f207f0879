"""blob_data: small blobs inline

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 15:39:46.453706
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blob_data',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_blob_data'))
    )


def downgrade() -> None:
    op.drop_table('blob_data')
