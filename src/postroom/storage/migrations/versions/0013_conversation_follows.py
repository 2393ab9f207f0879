"""conversation follows an older one

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 05:45:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('follows_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_conversations_follows_id_conversations'), 'conversations',
                                    ['follows_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_conversations_follows_id_conversations'), type_='foreignkey')
        batch_op.drop_column('follows_id')
