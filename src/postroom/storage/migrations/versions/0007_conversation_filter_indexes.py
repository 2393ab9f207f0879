"""conversation filter and notification recipient indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 15:07:58.600078
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_tenant_activity', ['tenant_id', 'last_activity_at'], unique=False)
        batch_op.create_index('ix_conversations_tenant_category', ['tenant_id', 'category'], unique=False)
        batch_op.create_index('ix_conversations_tenant_responsible_team', ['tenant_id', 'responsible_team_id'], unique=False)
        batch_op.create_index('ix_conversations_tenant_responsible_user', ['tenant_id', 'responsible_user_id'], unique=False)
        batch_op.create_index('ix_conversations_tenant_unit', ['tenant_id', 'unit_ref'], unique=False)

    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.create_index('ix_notification_events_tenant_recipient', ['tenant_id', 'recipient_type', 'recipient_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_events_tenant_recipient')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_tenant_unit')
        batch_op.drop_index('ix_conversations_tenant_responsible_user')
        batch_op.drop_index('ix_conversations_tenant_responsible_team')
        batch_op.drop_index('ix_conversations_tenant_category')
        batch_op.drop_index('ix_conversations_tenant_activity')

