"""Schema migrations: a fresh registry is at the latest step, opening again changes nothing,
a database from a newer modelport is refused, and an older one is upgraded in place."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelport.errors import RegistryError
from modelport.registry import migrations, open_registry
from modelport.registry.sql import SQLRegistry


def _schema_version(reg) -> int:
    with reg.engine.connect() as conn:
        return migrations.current_version(conn)


def test_fresh_registry_is_at_the_latest_step(any_url, tmp_path, base_bundle):
    reg = open_registry(any_url, artifacts=tmp_path / "a")
    assert _schema_version(reg) == migrations.LATEST
    reg.push(base_bundle)
    again = SQLRegistry(reg.engine.url.render_as_string(hide_password=False), artifacts=tmp_path / "a")
    assert _schema_version(again) == migrations.LATEST
    assert [v.version for v in again.versions("iris")] == [1]
    again.close()


def test_newer_schema_is_refused(sqlite_url, tmp_path):
    reg = open_registry(sqlite_url, artifacts=tmp_path / "a")
    with reg.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {migrations.SCHEMA_TABLE} SET version = {migrations.LATEST + 1}")
    with pytest.raises(RegistryError, match="newer than this modelport knows") as err:
        SQLRegistry(sqlite_url, artifacts=tmp_path / "a")
    assert "upgrade modelport" in str(err.value)


def test_an_older_schema_is_upgraded_in_place(sqlite_url, tmp_path, base_bundle):
    reg = open_registry(sqlite_url, artifacts=tmp_path / "a")
    reg.push(base_bundle)
    with reg.engine.begin() as conn:  # back to step 1: the step-2 indexes are gone
        for name in ("ix_mp_versions_digest", "ix_mp_versions_blob", "ix_mp_tags_key_value", "ix_mp_metrics_key_value"):
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql(f"UPDATE {migrations.SCHEMA_TABLE} SET version = 1")
    upgraded = SQLRegistry(sqlite_url, artifacts=tmp_path / "a")
    assert _schema_version(upgraded) == migrations.LATEST
    with upgraded.engine.connect() as conn:
        indexes = {i["name"] for i in __import__("sqlalchemy").inspect(conn).get_indexes("mp_versions")}
    assert {"ix_mp_versions_digest", "ix_mp_versions_blob"} <= indexes
    assert upgraded.resolve("models:/iris/1").digest == base_bundle.digest
    upgraded.close()


def test_importing_the_registry_is_light():
    code = (
        "import sys, modelport, modelport.registry, modelport.registry.uri, modelport.registry.query;"
        "heavy = [m for m in ('sqlalchemy', 'psycopg', 'fsspec', 'pandas', 'sklearn') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
