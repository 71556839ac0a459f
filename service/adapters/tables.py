"""SQLAlchemy Core tables. The schema is created and changed only by alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()


class _Instant(sa.TypeDecorator[datetime]):
    """A UTC instant, read back timezone-aware on every database (SQLite keeps no zone and hands
    values back naive: they were written as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


Instant = _Instant()

resources = sa.Table(
    "resources", metadata,
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=True),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),  # input | output
    sa.Column("content", sa.Text, nullable=False),
    sa.Index("ix_resources_patient", "patient_id", "resource_type"),
)

# Every version of every resource (also deletions), for vread and _history; `resources` keeps the
# current one. Written beside `resources` by Store.put/delete.
resource_history = sa.Table(
    "resource_history", metadata,
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version_id", sa.Integer, primary_key=True),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),  # POST | PUT | DELETE
    sa.Column("content", sa.Text, nullable=True),  # None for a deletion
    sa.Index("ix_resource_history_type_updated", "resource_type", "last_updated"),
)

receipts = sa.Table(
    "receipts", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("version_id", sa.String(64), primary_key=True),
    sa.Column("received_at", Instant, nullable=False),
    sa.Column("source_updated", Instant, nullable=True),  # the sender's meta.lastUpdated
)

pending_evaluations = sa.Table(
    "pending_evaluations", metadata,
    sa.Column("patient_id", sa.String(64), primary_key=True),
    sa.Column("since", Instant, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
)

evaluations = sa.Table(
    "evaluations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
    sa.Column("episode_id", sa.String(64), nullable=True),
    sa.Column("pathway_id", sa.String(64), nullable=False),
    sa.Column("pathway_version", sa.String(32), nullable=False),
    sa.Column("evaluated_at", Instant, nullable=False),
    sa.Column("urgency", sa.String(16), nullable=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("changed", sa.Boolean, nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),  # fhir | webhook
    sa.Column("destination", sa.String(500), nullable=False),
    sa.Column("dedupe_key", sa.String(500), nullable=False, unique=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Instant, nullable=False),
    sa.Column("locked_by", sa.String(100), nullable=True),
    sa.Column("locked_until", Instant, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("delivered_at", Instant, nullable=True),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", Instant, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=True, index=True),
    sa.Column("detail", sa.Text, nullable=False),
)

remote_ids = sa.Table(
    "remote_ids", metadata,
    sa.Column("server", sa.String(500), primary_key=True),
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("remote_id", sa.String(64), nullable=False),
    sa.Column("remote_version", sa.String(64), nullable=True),
    sa.Column("local_version", sa.Integer, nullable=False),
    sa.Column("updated_at", Instant, nullable=False),
)

cds_feedback = sa.Table(
    "cds_feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service_id", sa.String(100), nullable=False),
    sa.Column("card_uuid", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("outcome_timestamp", sa.String(40), nullable=False),
    sa.Column("accepted_suggestions", sa.Text, nullable=True),
    sa.Column("override_reason", sa.Text, nullable=True),
    sa.Column("received_at", Instant, nullable=False),
    sa.UniqueConstraint("service_id", "card_uuid", "outcome", "outcome_timestamp",
                        name="uq_cds_feedback_once"),
)

jwt_replay = sa.Table(
    "jwt_replay", metadata,
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("issuer", sa.String(500), nullable=False),
    sa.Column("expires_at", Instant, nullable=False, index=True),
)

webhook_subscribers = sa.Table(
    "webhook_subscribers", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(1000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("event_types", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False, server_default="api"),  # api | config
)

subscription_streams = sa.Table(
    "subscription_streams", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("subscription", sa.String(500), primary_key=True),
    sa.Column("last_event_number", sa.Integer, nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("updated_at", Instant, nullable=False),
)

subscription_gaps = sa.Table(
    "subscription_gaps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("subscription", sa.String(500), nullable=False),
    sa.Column("first_missing", sa.Integer, nullable=False),
    sa.Column("last_missing", sa.Integer, nullable=False),
    sa.Column("detected_at", Instant, nullable=False),
    sa.Column("recovered_at", Instant, nullable=True),
)

# The clinician app's SMART launches and sessions (issue 16). `id` is the SHA-256 of the random
# secret held (signed) in the browser's cookie, so the table alone cannot be used to sign in.
app_sessions = sa.Table(
    "app_sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("stage", sa.String(16), nullable=False),  # launch | session
    sa.Column("issuer", sa.String(500), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("expires_at", Instant, nullable=False),
    sa.Index("ix_app_sessions_expires", "expires_at"),
)

# Time-driven re-evaluation (spec 2a.1): when each patient's decision may next change with no new
# data. One row per patient with something due; the scheduler claims due rows under a lease.
patient_schedule = sa.Table(
    "patient_schedule", metadata,
    sa.Column("patient_id", sa.String(64), primary_key=True),
    sa.Column("due_at", Instant, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("computed_at", Instant, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("locked_by", sa.String(100), nullable=True),
    sa.Column("locked_until", Instant, nullable=True),
    sa.Index("ix_patient_schedule_due", "due_at"),
)

# Keys the service generates once and every replica shares (issue 15: the log pseudonym key).
service_keys = sa.Table(
    "service_keys", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
