"""webhooks: the sender's lastUpdated on receipts (out-of-order detection), subscriber origin

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_updated', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('webhook_subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=16), nullable=False,
                                      server_default='api'))


def downgrade() -> None:
    with op.batch_alter_table('webhook_subscribers', schema=None) as batch_op:
        batch_op.drop_column('origin')
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_column('source_updated')
