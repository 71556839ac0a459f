"""app_sessions: the clinician app's pending SMART launches and signed-in sessions

Revision ID: app_sessions
Revises: 0002
Create Date: 2026-11-27 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'app_sessions'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'app_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('issuer', sa.String(length=500), nullable=False),
        sa.Column('patient_id', sa.String(length=64), nullable=True),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_app_sessions_expires', 'app_sessions', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_app_sessions_expires', table_name='app_sessions')
    op.drop_table('app_sessions')
