"""service_keys: secrets the service generates once and every replica shares (the key of the
patient pseudonyms in logs)

Revision ID: service_keys
Revises: 0002
Create Date: 2026-11-27 22:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'service_keys'
down_revision = 'resource_history'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'service_keys',
        sa.Column('name', sa.String(length=64), primary_key=True),
        sa.Column('value', sa.String(length=200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('service_keys')
