"""patient_schedule: when each patient's decision may next change with no new data (spec 2a.1)

Every patient evaluated before this revision is scheduled at their latest evaluation, so the first
scheduler pass after the upgrade re-evaluates them once and works out their real next instant.

Revision ID: patient_schedule
Revises: 0002
Create Date: 2026-11-27 22:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'patient_schedule'
down_revision = 'app_sessions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patient_schedule',
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('patient_id')
    )
    with op.batch_alter_table('patient_schedule', schema=None) as batch_op:
        batch_op.create_index('ix_patient_schedule_due', ['due_at'], unique=False)
    op.execute(
        "INSERT INTO patient_schedule (patient_id, due_at, reason, computed_at, attempts) "
        "SELECT patient_id, MAX(evaluated_at), "
        "'evaluated before time-driven re-evaluation existed', "
        "MAX(evaluated_at), 0 FROM evaluations GROUP BY patient_id")


def downgrade() -> None:
    with op.batch_alter_table('patient_schedule', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_schedule_due')
    op.drop_table('patient_schedule')
