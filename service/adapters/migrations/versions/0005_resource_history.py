"""resource history: every version of every resource (and deletions) for vread and _history

Revision ID: resource_history
Revises: 0002
Create Date: 2026-11-27 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'resource_history'
down_revision = 'patient_schedule'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'resource_history',
        sa.Column('resource_type', sa.String(length=64), nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('last_updated', sa.DateTime(timezone=True), nullable=False),
        sa.Column('method', sa.String(length=8), nullable=False),
        sa.Column('content', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('resource_type', 'id', 'version_id'),
    )
    op.create_index('ix_resource_history_type_updated', 'resource_history',
                    ['resource_type', 'last_updated'])
    # versions stored before this migration become their first history entry
    op.execute("INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) "
               "SELECT resource_type, id, version_id, last_updated, 'PUT', content FROM resources")


def downgrade() -> None:
    op.drop_index('ix_resource_history_type_updated', table_name='resource_history')
    op.drop_table('resource_history')
