"""The registry on SQLAlchemy: one implementation for SQLite (the default, embedded) and PostgreSQL.

Metadata lives in the database; bundle archives live in an artifact store (``store.py``),
content-addressed by the sha256 of their bytes. How pushes stay correct under concurrency:

- A push writes its blob first, outside any lock (the slow part: compression is done, the
  write and its fsyncs run in parallel with other pushes). Then, in one transaction, it locks
  its model (PostgreSQL: ``SELECT ... FOR UPDATE`` on the model's row; SQLite: ``BEGIN
  IMMEDIATE``, the database's single write lock), looks for the digest, makes sure the blob is
  still there and inserts the version. Version numbers are ``max + 1`` under that lock, so
  they are unique and gapless per model, and a digest pushed twice at once gets one version.
- A version never commits without its blob. A push killed after writing its blob leaves it
  unreferenced; ``gc()`` removes such blobs and a retry simply reuses it. Deleting a blob and
  checking that it is there happen only under the blob's lock (SQLite: the write lock;
  PostgreSQL: a transaction-scoped advisory lock per blob), so gc never removes a blob that a
  committing push relies on.
- ``created`` timestamps are the registry's (UTC); bundles carry none of their own.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelport._deps import require
from modelport.errors import (
    InputError,
    IntegrityError,
    ModelNotFoundError,
    ModelportError,
    RegistryError,
    SignatureError,
    VerificationError,
)
from modelport.registry import migrations
from modelport.registry.base import LineageEntry, ModelInfo, VersionInfo
from modelport.registry.query import Condition, glob_to_like, parse_where
from modelport.registry.store import ArtifactStore, blob_key, open_store
from modelport.registry.uri import ModelRef, check_alias, check_name, parse

if TYPE_CHECKING:
    import sqlalchemy as sa

    from modelport.bundle.core import Bundle
    from modelport.signing import SignaturePolicy

_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_TAG_VALUE = 512
_LIST_LIMIT = 30  # how many names an error message lists before "..."
_CHUNK = 500  # ids per IN (...) clause


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; they were written in UTC
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_LIST_LIMIT])
    more = f", ... ({len(items)} in all)" if len(items) > _LIST_LIMIT else ""
    return (shown + more) if items else "none"


class SQLRegistry:
    """A model registry in a SQLite or PostgreSQL database plus an artifact store.

    Use :func:`modelport.registry.open_registry` rather than constructing this directly.
    """

    def __init__(self, engine_url: str, *, artifacts: str | os.PathLike[str] | None = None,
                 display_url: str | None = None) -> None:
        self._sa = require("sqlalchemy", purpose="the model registry")
        from modelport.registry import schema

        self._t = schema
        self.url = display_url or engine_url
        self.dialect = engine_url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "postgresql":
            require("psycopg", purpose="a PostgreSQL model registry")
        self.engine = self._create_engine(engine_url)
        self._migrate()
        self.store: ArtifactStore = open_store(self._artifact_location(engine_url, artifacts))

    # ----------------------------------------------------------------- engine and transactions
    def _create_engine(self, engine_url: str) -> sa.Engine:
        sa = self._sa
        if self.dialect == "sqlite":
            engine = sa.create_engine(engine_url, connect_args={"timeout": 60, "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # let SQLAlchemy's begin event (below) emit BEGIN itself
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout = 60000")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA foreign_keys = ON")
                # in WAL mode NORMAL never corrupts and survives a killed process; a power cut may
                # lose the last commits, which only leaves blobs for gc (blobs are fsynced first)
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.close()

            @sa.event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                # writers take the write lock up front: a deferred BEGIN that upgrades later can
                # fail with SQLITE_BUSY without waiting, which would turn contention into errors
                write = conn.get_execution_options().get("mp_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        if self.dialect == "postgresql":
            return sa.create_engine(engine_url, pool_pre_ping=True)
        raise RegistryError(f"unsupported registry database {self.url!r}.")

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[sa.Connection]:
        sa = self._sa
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(mp_write=True)
                with conn.begin():
                    yield conn
        except ModelportError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(
                f"the registry database at {self.url} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                hint="check that the database is reachable and writable (MODELPORT_REGISTRY)",
            ) from exc

    def _migrate(self) -> None:
        with self._tx(write=False) as conn:
            if not migrations.needs_upgrade(conn):
                return
        with self._tx(write=True) as conn:
            migrations.upgrade(conn)

    def _artifact_location(self, engine_url: str, explicit: str | os.PathLike[str] | None) -> str:
        chosen = os.fspath(explicit) if explicit is not None else os.environ.get("MODELPORT_ARTIFACTS") or None
        if self.dialect == "sqlite":
            if chosen:
                return chosen
            db = Path(self.engine.url.database or "registry.db")
            return str(db.with_name(db.stem + ".artifacts"))
        # a shared database records where its artifacts are, so that every client agrees
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        t = self._t
        query = self._sa.select(t.settings.c.value).where(t.settings.c.key == "artifacts")
        with self._tx(write=True) as conn:
            stored = conn.execute(query).scalar()
            if stored is None:
                home = Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport").expanduser()
                # many clients may open a fresh database at once: the first insert wins and the
                # others read what it stored (a plain INSERT would fail them on the primary key)
                conn.execute(
                    pg_insert(t.settings)
                    .values(key="artifacts", value=chosen or str(home / "artifacts"))
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                stored = conn.execute(query).scalar()
        return chosen or cast(str, stored)  # the row exists now and its value is NOT NULL

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"<SQLRegistry {self.url} artifacts={self.store.url}>"

    # ----------------------------------------------------------------- push
    def push(
        self,
        bundle: Bundle | str | os.PathLike[str],
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        signature_policy: SignaturePolicy | None = None,
    ) -> VersionInfo:
        """Store ``bundle`` as the next version of its model (``name`` or the bundle's name).

        Idempotent: a digest the model already holds returns that version (restoring it if it
        was soft-deleted) and stores nothing new, except a signature: when the stored archive
        differs from this one only by ``manifest.sig``, the version takes this bundle's signature
        if it had none (or, under ``signature_policy``, the signature just verified). A bundle
        that fails ``modelport.check`` on this machine is refused with VerificationError; with
        ``signature_policy``, one that the policy refuses (unsigned, untrusted signer, a
        signature over other files) is refused with SignatureError before anything is stored.
        """
        from modelport.bundle.core import Bundle
        from modelport.verification import check

        b = bundle if isinstance(bundle, Bundle) else Bundle.read(bundle)
        model = check_name(name if name is not None else b.name)
        extra_tags = _check_tags(tags or {})
        if signature_policy is not None:
            try:
                signature_policy.check(b)
            except SignatureError as exc:
                raise SignatureError(f"refusing to push {exc.message}", hint=exc.hint) from exc
        # the same verdict as `modelport verify`: digests (checked by loading) and reference parity here
        report = check(b)
        if not report.verified:
            if report.parity is None:
                raise VerificationError(
                    f"refusing to push {b.origin}: it stores no reference data, so nothing shows that it gives "
                    "the answers it was packed with (`modelport verify` fails on it too).",
                    hint="re-pack the model with modelport pack, which stores reference inputs and outputs",
                )
            raise VerificationError(
                f"refusing to push {b.origin}: it does not reproduce its own reference answers on this "
                f"machine ({report.parity.summary()}).",
                hint="run `modelport verify` on it for details; re-pack the model if the bundle is damaged",
            )
        # the canonical archive, not the file as given: zip fields that no digest covers are
        # rewritten, and the same bundle always dedupes to the same blob
        data = b.to_bytes()
        key = blob_key(data)
        manifest = b.manifest
        manifest_tags = _check_tags({str(k): str(v) for k, v in (manifest.get("tags") or {}).items()})
        metrics = _check_metrics(manifest.get("metrics") or {})
        parent = (manifest.get("lineage") or {}).get("parent")
        t, sa = self._t, self._sa
        # the slow part (compression done, now the write and its fsyncs) runs before any lock,
        # in parallel with other pushes; under the lock the blob is only checked for presence
        wrote = self.store.put(key, data)
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, model, create=True)
            row = conn.execute(
                sa.select(t.versions).where(t.versions.c.model_id == model_id, t.versions.c.digest == b.digest)
            ).mappings().first()
            self._lock_blob(conn, key)
            if row is not None:
                if row["blob"] == key:
                    self.store.put(key, data)  # gc may have taken it if it was missing; put it back
                elif self._takes_signature(row["blob"], b, verified=signature_policy is not None):
                    # the old archive is left for gc(): deleting it before this commits could lose it
                    conn.execute(t.versions.update().where(t.versions.c.id == row["id"]).values(blob=key, size=len(data)))
                elif wrote and not self._blob_used(conn, key):
                    # same digest, other manifest bytes: the version keeps its own archive
                    self.store.delete(key)
                if row["deleted"] is not None:
                    conn.execute(t.versions.update().where(t.versions.c.id == row["id"]).values(deleted=None))
                self._upsert_tags(conn, row["id"], extra_tags)
                return self._infos(conn, [row["id"]])[0]
            if not self.store.exists(key):
                self.store.put(key, data)  # gc ran between our write and our lock
            latest = conn.execute(
                sa.select(sa.func.max(t.versions.c.version)).where(t.versions.c.model_id == model_id)
            ).scalar()
            number = int(latest or 0) + 1
            vid = conn.execute(
                t.versions.insert().values(
                    model_id=model_id, version=number, digest=b.digest, blob=key, size=len(data),
                    task=b.task, description=manifest.get("description"), parent=parent,
                    manifest=json.dumps(manifest, sort_keys=True), created=_now(), deleted=None,
                ).returning(t.versions.c.id)
            ).scalar_one()
            self._upsert_tags(conn, vid, {**manifest_tags, **extra_tags})
            if metrics:
                conn.execute(t.metrics.insert(), [{"version_id": vid, "key": k, "value": v} for k, v in metrics.items()])
            info = self._infos(conn, [vid])[0]
        # a push that fails or dies after writing its blob leaves it unreferenced: gc() removes it
        return _replace(info, is_new=True)

    def _takes_signature(self, stored_key: str, b: Bundle, *, verified: bool) -> bool:
        """Whether a version stored as ``stored_key`` should take ``b``'s archive because ``b`` brings a
        signature: the stored files are the same apart from ``manifest.sig``, and the stored archive
        has no signature (or the new one was verified by the push's policy, which may replace it)."""
        from modelport.bundle import archive
        from modelport.bundle.signing import SIGNATURE_FILE

        if SIGNATURE_FILE not in b.files:
            return False
        try:
            stored = archive.read_mpk_bytes(self.store.get(stored_key), origin=f"blob {stored_key}")
        except ModelportError:
            return False  # a damaged or missing archive is repaired by pushing the same bytes, not by this
        if SIGNATURE_FILE in stored and not verified:
            return False
        new = b.files
        return {k for k in stored if k != SIGNATURE_FILE} == {k for k in new if k != SIGNATURE_FILE} and all(
            stored[k] == new[k] for k in stored if k != SIGNATURE_FILE
        )

    def _lock_model(self, conn: sa.Connection, name: str, *, create: bool) -> int:
        t, sa = self._t, self._sa
        if create:
            from sqlalchemy.dialects import postgresql, sqlite

            insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            conn.execute(insert(t.models).values(name=name, created=_now()).on_conflict_do_nothing(index_elements=["name"]))
        model_id = conn.execute(sa.select(t.models.c.id).where(t.models.c.name == name).with_for_update()).scalar()
        if model_id is None:
            raise self._unknown_model(conn, name)
        return int(model_id)

    def _blob_used(self, conn: sa.Connection, key: str) -> bool:
        t, sa = self._t, self._sa
        return bool(conn.execute(sa.select(sa.func.count()).where(t.versions.c.blob == key)).scalar())

    def _lock_blob(self, conn: sa.Connection, key: str) -> None:
        if self.dialect == "postgresql":
            conn.execute(self._sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(key[:15], 16)})
        # SQLite: BEGIN IMMEDIATE already serialises every writer

    def _upsert_tags(self, conn: sa.Connection, vid: int, tags: Mapping[str, str]) -> None:
        if not tags:
            return
        t = self._t
        conn.execute(t.tags.delete().where(t.tags.c.version_id == vid, t.tags.c.key.in_(list(tags))))
        conn.execute(t.tags.insert(), [{"version_id": vid, "key": k, "value": v} for k, v in tags.items()])

    # ----------------------------------------------------------------- lookups
    def resolve(self, uri: str) -> VersionInfo:
        """The version a URI points at; ModelNotFoundError (listing what exists) if none."""
        ref = parse(uri, bare=True)
        with self._tx(write=False) as conn:
            return self._infos(conn, [self._resolve_id(conn, ref)])[0]

    def _resolve_id(self, conn: sa.Connection, ref: ModelRef, *, model_id: int | None = None) -> int:
        # one query on the happy path (it is what a server polls to follow an alias); the
        # lookups that explain a failure run only when there is one
        t, sa = self._t, self._sa
        v, m = t.versions, t.models
        model = (m.c.id == model_id) if model_id is not None else (m.c.name == ref.name)
        if ref.alias is not None:
            vid = conn.execute(
                sa.select(t.aliases.c.version_id).join(m, m.c.id == t.aliases.c.model_id)
                .where(model, t.aliases.c.alias == ref.alias)
            ).scalar()
            if vid is not None:
                return int(vid)
            have = self._aliases_of(conn, self._model_id(conn, ref.name, model_id))
            raise ModelNotFoundError(
                f"model {ref.name!r} has no alias {ref.alias!r}; its aliases: "
                f"{_listing([f'{a} -> {n}' for a, n in sorted(have.items())])}.",
                hint=f"set it with: modelport alias {ref.name} {ref.alias} VERSION",
            )
        if ref.version is not None:
            row = conn.execute(
                sa.select(v.c.id, v.c.deleted).join(m, m.c.id == v.c.model_id).where(model, v.c.version == ref.version)
            ).first()
            if row is not None and row.deleted is None:
                return int(row.id)
            live = self._live_numbers(conn, self._model_id(conn, ref.name, model_id))
            gone = "" if row is None else f" (it was deleted on {_utc(row.deleted):%Y-%m-%d %H:%M} UTC)"
            raise ModelNotFoundError(
                f"model {ref.name!r} has no version {ref.version}{gone}; its versions: {_listing(live)}"
                + (f" (latest {live[-1]})." if live else "."),
                hint=f"list them with: modelport versions {ref.name}"
                + ("; push the same bundle again to restore a deleted version" if row is not None else ""),
            )
        vid = conn.execute(
            sa.select(v.c.id).join(m, m.c.id == v.c.model_id).where(model, v.c.deleted.is_(None))
            .order_by(v.c.version.desc()).limit(1)
        ).scalar()
        if vid is not None:
            return int(vid)
        self._model_id(conn, ref.name, model_id)
        raise ModelNotFoundError(
            f"model {ref.name!r} has no live versions (all were deleted).",
            hint=f"push a bundle with: modelport push FILE --name {ref.name}",
        )

    def _model_id(self, conn: sa.Connection, name: str, known: int | None = None) -> int:
        if known is not None:
            return known
        t = self._t
        model_id = conn.execute(self._sa.select(t.models.c.id).where(t.models.c.name == name)).scalar()
        if model_id is None:
            raise self._unknown_model(conn, name)
        return int(model_id)

    def _unknown_model(self, conn: sa.Connection, name: str) -> ModelNotFoundError:
        names = conn.execute(self._sa.select(self._t.models.c.name).order_by(self._t.models.c.name)).scalars().all()
        return ModelNotFoundError(
            f"no model named {name!r} in the registry at {self.url}; models: {_listing(names)}.",
            hint="list them with: modelport models",
        )

    def _live_numbers(self, conn: sa.Connection, model_id: int) -> list[int]:
        v = self._t.versions
        return [int(n) for n in conn.execute(
            self._sa.select(v.c.version).where(v.c.model_id == model_id, v.c.deleted.is_(None)).order_by(v.c.version)
        ).scalars()]

    def _aliases_of(self, conn: sa.Connection, model_id: int) -> dict[str, int]:
        t, sa = self._t, self._sa
        rows = conn.execute(
            sa.select(t.aliases.c.alias, t.versions.c.version)
            .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
            .where(t.aliases.c.model_id == model_id)
        )
        return {r.alias: int(r.version) for r in rows}

    def _infos(self, conn: sa.Connection, ids: Sequence[int]) -> list[VersionInfo]:
        """VersionInfo for version row ids, in the order given."""
        if not ids:
            return []
        t, sa = self._t, self._sa
        rows: dict[int, Any] = {}
        tags: dict[int, dict[str, str]] = {}
        metrics: dict[int, dict[str, float]] = {}
        aliases: dict[int, list[str]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            for m in conn.execute(
                sa.select(t.versions, t.models.c.name.label("model_name"))
                .join(t.models, t.models.c.id == t.versions.c.model_id)
                .where(t.versions.c.id.in_(chunk))
            ).mappings():
                rows[m["id"]] = m
            # tags, metrics and aliases in one round trip
            text, num = sa.String(512), sa.Float
            extras = sa.union_all(
                sa.select(t.tags.c.version_id, sa.literal_column("'t'").label("kind"), t.tags.c.key,
                          t.tags.c.value.label("text"), sa.cast(sa.null(), num).label("num"))
                .where(t.tags.c.version_id.in_(chunk)),
                sa.select(t.metrics.c.version_id, sa.literal_column("'m'"), t.metrics.c.key,
                          sa.cast(sa.null(), text), t.metrics.c.value)
                .where(t.metrics.c.version_id.in_(chunk)),
                sa.select(t.aliases.c.version_id, sa.literal_column("'a'"), t.aliases.c.alias,
                          sa.cast(sa.null(), text), sa.cast(sa.null(), num))
                .where(t.aliases.c.version_id.in_(chunk)),
            )
            for e in conn.execute(extras):
                if e.kind == "t":
                    tags.setdefault(e.version_id, {})[e.key] = e.text
                elif e.kind == "m":
                    metrics.setdefault(e.version_id, {})[e.key] = float(e.num)
                else:
                    aliases.setdefault(e.version_id, []).append(e.key)
        out = []
        for vid in ids:
            r = rows[vid]
            out.append(VersionInfo(
                name=r["model_name"], version=int(r["version"]), digest=r["digest"], created=_utc(r["created"]),
                aliases=tuple(sorted(aliases.get(vid, []))), tags=dict(sorted(tags.get(vid, {}).items())),
                metrics=dict(sorted(metrics.get(vid, {}).items())), parent=r["parent"],
                description=r["description"], task=r["task"], size=int(r["size"]), blob=r["blob"],
                deleted=_aware(r["deleted"]),
            ))
        return out

    def manifest(self, uri: str) -> dict[str, Any]:
        """The manifest of a version, from the database (no blob read)."""
        ref = parse(uri, bare=True)
        with self._tx(write=False) as conn:
            vid = self._resolve_id(conn, ref)
            text = conn.execute(self._sa.select(self._t.versions.c.manifest).where(self._t.versions.c.id == vid)).scalar_one()
        return dict(json.loads(text))

    # ----------------------------------------------------------------- reading bundles
    def load(self, uri: str) -> Bundle:
        """The bundle a URI points at, with its blob sha256 and bundle digest verified."""
        from modelport.bundle.core import Bundle

        info = self.resolve(uri)
        data = self.store.get(info.blob)  # checks the blob's sha256
        bundle = Bundle.from_bytes(data, origin=info.uri)  # checks every file against the manifest
        if bundle.digest != info.digest:
            raise IntegrityError(
                f"{info.uri}: the stored bundle has digest {bundle.digest}, but the registry recorded {info.digest}.",
                hint="the artifact store was tampered with; push the bundle again from a good copy",
            )
        return bundle

    def pull(self, uri: str, path: str | os.PathLike[str]) -> VersionInfo:
        """Write the bundle a URI points at to ``path`` (``.mpk`` file, or a directory)."""
        info = self.resolve(uri)
        self.load(info.uri).save(path)
        return info

    # ----------------------------------------------------------------- listings
    def models(self) -> list[ModelInfo]:
        t, sa = self._t, self._sa
        v = t.versions
        with self._tx(write=False) as conn:
            stats = {
                r.model_id: (r.latest, r.n)
                for r in conn.execute(
                    sa.select(v.c.model_id, sa.func.max(v.c.version).label("latest"), sa.func.count().label("n"))
                    .where(v.c.deleted.is_(None))
                    .group_by(v.c.model_id)
                )
            }
            aliases: dict[int, dict[str, int]] = {}
            for r in conn.execute(
                sa.select(t.aliases.c.model_id, t.aliases.c.alias, v.c.version).join(v, v.c.id == t.aliases.c.version_id)
            ):
                aliases.setdefault(r.model_id, {})[r.alias] = int(r.version)
            out = []
            for r in conn.execute(sa.select(t.models).order_by(t.models.c.name)):
                latest, n = stats.get(r.id, (None, 0))
                out.append(ModelInfo(r.name, _utc(r.created), None if latest is None else int(latest), int(n),
                                     dict(sorted(aliases.get(r.id, {}).items()))))
        return out

    def versions(self, name: str, *, include_deleted: bool = False) -> list[VersionInfo]:
        t, sa = self._t, self._sa
        v = t.versions
        with self._tx(write=False) as conn:
            model_id = conn.execute(sa.select(t.models.c.id).where(t.models.c.name == name)).scalar()
            if model_id is None:
                raise self._unknown_model(conn, name)
            q = sa.select(v.c.id).where(v.c.model_id == model_id).order_by(v.c.version)
            if not include_deleted:
                q = q.where(v.c.deleted.is_(None))
            return self._infos(conn, list(conn.execute(q).scalars()))

    # ----------------------------------------------------------------- aliases and tags
    def set_alias(self, name: str, alias: str, version: int | str) -> VersionInfo:
        """Point ``alias`` of model ``name`` at ``version`` (moving it if it points elsewhere)."""
        check_alias(alias)
        number = _version_number(version)
        t = self._t
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, name, create=False)
            vid = self._resolve_id(conn, ModelRef(name, version=number), model_id=model_id)
            conn.execute(t.aliases.delete().where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias))
            conn.execute(t.aliases.insert().values(model_id=model_id, alias=alias, version_id=vid, updated=_now()))
            return self._infos(conn, [vid])[0]

    def remove_alias(self, name: str, alias: str) -> None:
        t = self._t
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, name, create=False)
            gone = conn.execute(
                t.aliases.delete().where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias)
            ).rowcount
            if not gone:
                have = self._aliases_of(conn, model_id)
                raise ModelNotFoundError(
                    f"model {name!r} has no alias {alias!r}; its aliases: "
                    f"{_listing([f'{a} -> {n}' for a, n in sorted(have.items())])}."
                )

    def set_tags(self, uri: str, tags: Mapping[str, str]) -> VersionInfo:
        checked = _check_tags(tags)
        ref = parse(uri, bare=True)
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, ref.name, create=False)
            vid = self._resolve_id(conn, ref, model_id=model_id)
            self._upsert_tags(conn, vid, checked)
            return self._infos(conn, [vid])[0]

    def remove_tags(self, uri: str, keys: Sequence[str]) -> VersionInfo:
        t = self._t
        ref = parse(uri, bare=True)
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, ref.name, create=False)
            vid = self._resolve_id(conn, ref, model_id=model_id)
            info = self._infos(conn, [vid])[0]
            missing = [k for k in keys if k not in info.tags]
            if missing:
                raise InputError(
                    f"{info.uri} has no tag(s) {', '.join(map(repr, missing))}; its tags: {_listing(sorted(info.tags))}."
                )
            conn.execute(t.tags.delete().where(t.tags.c.version_id == vid, t.tags.c.key.in_(list(keys))))
            return self._infos(conn, [vid])[0]

    # ----------------------------------------------------------------- search
    def search(
        self,
        *,
        name: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        where: str | None = None,
        include_deleted: bool = False,
    ) -> list[VersionInfo]:
        """Versions matching every criterion: ``name`` (``*``/``?`` wildcards), ``tags`` (key -> value,
        or None for "has the tag") and a ``where`` query (see ``modelport.registry.query``)."""
        t, sa = self._t, self._sa
        v, m = t.versions, t.models
        clauses: list[Any] = []
        if not include_deleted:
            clauses.append(v.c.deleted.is_(None))
        if name:
            clauses.append(self._name_like(name))
        for key, value in (tags or {}).items():
            cond = [t.tags.c.version_id == v.c.id, t.tags.c.key == key]
            if value is not None:
                cond.append(t.tags.c.value == value)
            clauses.append(sa.exists().where(*cond))
        for c in parse_where(where) if where else []:
            clauses.append(self._condition(c))
        with self._tx(write=False) as conn:
            ids = conn.execute(
                sa.select(v.c.id).join(m, m.c.id == v.c.model_id).where(*clauses).order_by(m.c.name, v.c.version)
            ).scalars().all()
            return self._infos(conn, list(ids))

    def _name_like(self, pattern: str) -> Any:
        sa = self._sa
        # LIKE is case-insensitive on SQLite and case-sensitive on PostgreSQL: lower both sides
        return sa.func.lower(self._t.models.c.name).like(glob_to_like(pattern.lower()), escape="\\")

    def _condition(self, c: Condition) -> Any:
        t, sa = self._t, self._sa
        v = t.versions
        if c.field == "metrics":
            return sa.exists().where(
                t.metrics.c.version_id == v.c.id, t.metrics.c.key == c.key, _compare(t.metrics.c.value, c.op, c.value)
            )
        if c.field == "tags":
            has = sa.exists().where(t.tags.c.version_id == v.c.id, t.tags.c.key == c.key, t.tags.c.value == c.value)
            return has if c.op == "=" else ~has  # a version without the tag is "not equal"
        if c.field == "name":
            like = self._name_like(str(c.value))
            return like if c.op == "=" else ~like
        column = {"version": v.c.version, "task": v.c.task, "digest": v.c.digest}[c.field]
        return _compare(column, c.op, c.value)

    # ----------------------------------------------------------------- delete, lineage, gc
    def delete(self, uri: str, *, force: bool = False) -> VersionInfo:
        """Soft-delete a version (its blob is kept; pushing the bundle again restores it).

        A version that an alias points at is refused unless ``force``, which also removes the aliases.
        """
        ref = parse(uri, bare=True)
        if ref.version is None and ref.alias is None:
            raise InputError(
                f"{uri!r} does not name a version; delete needs models:/NAME/VERSION or models:/NAME@ALIAS.",
                hint=f"list the versions with: modelport versions {ref.name}",
            )
        t = self._t
        with self._tx(write=True) as conn:
            model_id = self._lock_model(conn, ref.name, create=False)
            vid = self._resolve_id(conn, ref, model_id=model_id)
            info = self._infos(conn, [vid])[0]
            if info.aliases and not force:
                raise RegistryError(
                    f"{info.uri} is what alias(es) {', '.join(info.aliases)} point at; refusing to delete it.",
                    hint=f"move the alias first (modelport alias {info.name} ALIAS VERSION), or pass --force "
                    "to delete the version and remove its aliases",
                )
            conn.execute(t.aliases.delete().where(t.aliases.c.version_id == vid))
            conn.execute(t.versions.update().where(t.versions.c.id == vid).values(deleted=_now()))
            return self._infos(conn, [vid])[0]

    def lineage(self, uri: str) -> list[LineageEntry]:
        """The chain from a version back through the parent digests recorded at pack time.

        Each parent is looked up by digest (same model first, then any model); a digest the
        registry does not hold ends the chain with an entry whose ``version`` is None.
        """
        t, sa = self._t, self._sa
        v = t.versions
        start = self.resolve(uri)
        chain = [LineageEntry(start.digest, start)]
        seen = {start.digest}
        parent = start.parent
        with self._tx(write=False) as conn:
            while parent:
                rows = conn.execute(
                    sa.select(v.c.id, t.models.c.name, v.c.deleted)
                    .join(t.models, t.models.c.id == v.c.model_id)
                    .where(v.c.digest == parent)
                    .order_by(v.c.id)
                ).all()
                if not rows:
                    chain.append(LineageEntry(parent, None))
                    break
                best = min(rows, key=lambda r: (r.name != start.name, r.deleted is not None))
                info = self._infos(conn, [best.id])[0]
                chain.append(LineageEntry(parent, info))
                if parent in seen or len(chain) > 10_000:
                    break  # a cycle cannot come from real packs, but a hand-edited manifest could make one
                seen.add(parent)
                parent = info.parent
        return chain

    def gc(self) -> list[str]:
        """Remove blobs that no version references (left by pushes that were killed). Returns their keys.

        Assumes the artifact store belongs to this registry alone.
        """
        t, sa = self._t, self._sa
        removed: list[str] = []
        if self.dialect == "sqlite":
            # BEGIN IMMEDIATE: no push can be between writing a blob and committing its version
            with self._tx(write=True) as conn:
                used = set(conn.execute(sa.select(t.versions.c.blob).distinct()).scalars())
                for key in list(self.store.blobs()):
                    if key not in used:
                        self.store.delete(key)
                        removed.append(key)
                for tmp in self.store.stale_temporaries():
                    self.store.remove_temporary(tmp)
            return removed
        with self._tx(write=False) as conn:
            used = set(conn.execute(sa.select(t.versions.c.blob).distinct()).scalars())
        candidates = [k for k in self.store.blobs() if k not in used]
        temporaries = self.store.stale_temporaries()
        for tmp in temporaries:
            key = Path(tmp).name[len(".tmp-"):][:64]
            if re.fullmatch(r"[0-9a-f]{64}", key) and key not in candidates:
                candidates.append(key)
        for key in candidates:
            with self._tx(write=True) as conn:
                self._lock_blob(conn, key)  # waits for a push of these bytes to commit or die
                if not self._blob_used(conn, key) and self.store.exists(key):
                    self.store.delete(key)
                    removed.append(key)
                for tmp in self.store.stale_temporaries(key):
                    self.store.remove_temporary(tmp)
        return removed


def _compare(column: Any, op: str, value: Any) -> Any:
    return {
        "<": column < value, "<=": column <= value, ">": column > value, ">=": column >= value,
        "=": column == value, "!=": column != value,
    }[op]


def _version_number(version: int | str) -> int:
    text = str(version)
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"the version must be a positive whole number, got {version!r}.")
    return int(text)


def _check_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, val in tags.items():
        if not isinstance(k, str) or not _KEY_RE.fullmatch(k):
            raise InputError(
                f"{k!r} is not a valid tag key: expected 1-128 characters from letters, digits, '_', '.', ':' and '-'."
            )
        if not isinstance(val, str):
            raise InputError(f"the value of tag {k!r} must be a string, got {type(val).__name__}.")
        if len(val) > MAX_TAG_VALUE:
            raise InputError(f"the value of tag {k!r} has {len(val)} characters; at most {MAX_TAG_VALUE} are allowed.")
        out[k] = val
    return out


def _check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, val in metrics.items():
        if not isinstance(k, str) or not _KEY_RE.fullmatch(k):
            raise InputError(
                f"the bundle's metric name {k!r} cannot be searched: expected 1-128 characters from letters, "
                "digits, '_', '.', ':' and '-'.",
                hint="re-pack with metrics named like auc, f1, rmse",
            )
        if val is None or isinstance(val, bool) or not isinstance(val, (int, float)):
            continue  # manifests write NaN/inf as null; there is nothing to compare against
        try:
            number = float(val)
        except OverflowError:  # an integer too large for a float (the manifest check refuses those)
            continue
        if math.isfinite(number):
            out[k] = number
    return out


def _replace(info: VersionInfo, **changes: Any) -> VersionInfo:
    from dataclasses import replace

    return replace(info, **changes)
