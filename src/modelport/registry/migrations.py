"""Schema migrations of the registry database: a version table and ordered steps.

``mp_schema`` holds one row, the number of the last step applied. Opening a registry applies
the steps it lacks, in order, in one transaction that holds the database's write lock (SQLite
``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so that many processes opening a fresh
registry at once create it exactly once. A database written by a newer modelport is refused
rather than guessed at.

Each step is frozen once released: it builds the tables as they were at that step, not as
``schema.py`` has them today.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from modelport.errors import RegistryError

SCHEMA_TABLE = "mp_schema"
# pg_advisory_xact_lock key for migrations ("modelport" in ASCII, truncated to fit an int8)
PG_MIGRATION_LOCK = 0x6D6F64656C706F


def _step1_tables(conn: sa.Connection) -> None:
    """Models, versions, aliases, tags, metrics and settings."""
    md = sa.MetaData()
    sa.Table(
        "mp_models", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "mp_versions", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mp_models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("blob", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("parent", sa.String(71), nullable=True),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_mp_versions_model_version"),
        sa.UniqueConstraint("model_id", "digest", name="uq_mp_versions_model_digest"),
    )
    sa.Table(
        "mp_aliases", md,
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mp_models.id"), primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "mp_tags", md,
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
    )
    sa.Table(
        "mp_metrics", md,
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    sa.Table(
        "mp_settings", md,
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    md.create_all(conn)


def _step2_lookup_indexes(conn: sa.Connection) -> None:
    """Indexes for lookups by digest and blob (lineage, gc) and for tag/metric search."""
    for name, table, cols in (
        ("ix_mp_versions_digest", "mp_versions", ("digest",)),
        ("ix_mp_versions_blob", "mp_versions", ("blob",)),
        ("ix_mp_tags_key_value", "mp_tags", ("key", "value")),
        ("ix_mp_metrics_key_value", "mp_metrics", ("key", "value")),
    ):
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(cols)})")


# (number, what it does, function); append only, never edit a released step
STEPS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "models, versions, aliases, tags, metrics, settings", _step1_tables),
    (2, "indexes for digest, blob, tag and metric lookups", _step2_lookup_indexes),
]
LATEST = STEPS[-1][0]


def current_version(conn: sa.Connection) -> int:
    """The schema version of the database (0 when it has no registry tables yet)."""
    if not sa.inspect(conn).has_table(SCHEMA_TABLE):
        return 0
    value = conn.execute(sa.text(f"SELECT version FROM {SCHEMA_TABLE}")).scalar()
    return int(value or 0)


def needs_upgrade(conn: sa.Connection) -> bool:
    version = current_version(conn)
    _refuse_newer(version)
    return version < LATEST


def upgrade(conn: sa.Connection) -> list[int]:
    """Apply the missing steps in order. Call inside a transaction holding the write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
    conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER NOT NULL)")
    rows = conn.execute(sa.text(f"SELECT version FROM {SCHEMA_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise RegistryError(f"the registry's {SCHEMA_TABLE} table holds {len(rows)} rows; expected one.")
    version = int(rows[0]) if rows else 0
    _refuse_newer(version)
    applied = []
    for number, _what, step in STEPS:
        if number > version:
            step(conn)
            applied.append(number)
    if applied:
        if rows:
            conn.execute(sa.text(f"UPDATE {SCHEMA_TABLE} SET version = :v"), {"v": LATEST})
        else:
            conn.execute(sa.text(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (:v)"), {"v": LATEST})
    return applied


def _refuse_newer(version: int) -> None:
    if version > LATEST:
        raise RegistryError(
            f"the registry database has schema version {version}, newer than this modelport knows ({LATEST}).",
            hint="upgrade modelport (pip install -U modelport) on this machine",
        )
