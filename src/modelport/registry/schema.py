"""The registry's tables as they are now (SQLAlchemy Core), used by ``sql.py`` to build queries.

The tables are created and changed only by the ordered steps in ``migrations.py``; when a step
changes a table, this file changes with it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

models = sa.Table(
    "mp_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "mp_versions",
    metadata,
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

aliases = sa.Table(
    "mp_aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("mp_models.id"), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

tags = sa.Table(
    "mp_tags",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(512), nullable=False),
)

metrics = sa.Table(
    "mp_metrics",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("mp_versions.id"), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

settings = sa.Table(
    "mp_settings",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
