"""A separate process that pushes bundle files into a registry, for the concurrency and kill -9
tests. Not a test module (pytest does not collect files starting with '_').

    python _push_worker.py push URL ARTIFACTS GO_FILE RESULT_JSON PATH=NAME ...
        waits until GO_FILE exists (so all workers start together), pushes every file,
        writes [{"path", "name", "version", "digest", "new"}] to RESULT_JSON.
    python _push_worker.py hang URL ARTIFACTS POINT PATH=NAME
        pushes one file but stops forever at POINT (after_tmp: blob written to its temporary
        file; after_blob: blob in place; after_insert: version row inserted, not committed),
        printing "PAUSED" so that the test can kill -9 it there.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _pause() -> None:
    print("PAUSED", flush=True)
    time.sleep(600)


def main(argv: list[str]) -> None:
    from modelport.registry import open_registry

    mode, url, artifacts = argv[:3]
    reg = open_registry(url, artifacts=artifacts)
    if mode == "push":
        go, result = argv[3:5]
        jobs = [a.rsplit("=", 1) for a in argv[5:]]
        while not os.path.exists(go):
            time.sleep(0.01)
        out = []
        for path, name in jobs:
            info = reg.push(path, name=name)
            out.append({"path": path, "name": info.name, "version": info.version, "digest": info.digest,
                        "new": info.is_new})
        with open(result, "w") as fh:
            json.dump(out, fh)
        return
    if mode == "hang":
        point, job = argv[3:5]
        path, name = job.rsplit("=", 1)
        if point == "after_tmp":
            import modelport.registry.store as store

            real_replace = os.replace

            def replace(src, dst, *a, **kw):  # type: ignore[no-untyped-def]
                if os.path.basename(str(src)).startswith(store.TMP_PREFIX):
                    _pause()
                return real_replace(src, dst, *a, **kw)

            store.os.replace = replace  # type: ignore[attr-defined]
        elif point == "after_blob":
            real_put = type(reg.store).put

            def put(self, key, data):  # type: ignore[no-untyped-def]
                real_put(self, key, data)
                _pause()

            type(reg.store).put = put  # type: ignore[method-assign]
        elif point == "after_insert":
            import sqlalchemy as sa

            @sa.event.listens_for(reg.engine, "after_cursor_execute")
            def after(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
                if statement.lstrip().upper().startswith("INSERT INTO MP_VERSIONS"):
                    _pause()
        else:
            raise SystemExit(f"unknown point {point}")
        reg.push(path, name=name)
        raise SystemExit("the push finished; it should have paused")
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
