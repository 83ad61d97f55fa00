"""The dashboard in a real browser: Debian's headless chromium driven by Playwright against a live
server; the numbers on the page are the API's, nothing is fetched from elsewhere; screenshots are
kept in tests/artifacts/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import thread_server

from modelport.serve.server import ServeConfig

from .conftest import churn_frame, churn_label, records

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _values(page, selector: str) -> dict[str, str]:
    return page.eval_on_selector_all(
        selector, "els => Object.fromEntries(els.map(e => [e.getAttribute('data-metric'), e.getAttribute('data-value')]))")


def _same(shown: str | None, value) -> bool:
    if value is None:
        return shown == ""
    return float(shown) == pytest.approx(float(value), rel=1e-12, abs=1e-12)


def test_the_dashboard_shows_the_apis_numbers(tmp_path, churn_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is not installed: run scripts/services.sh start"
    ARTIFACTS.mkdir(exist_ok=True)
    frame = churn_frame(150, 31)
    frame.loc[:20, "spend"] += 40  # some drift to show
    cfg = ServeConfig(sources=[str(churn_path)], log=str(tmp_path / "log"), log_rotate=0.5, drift_window=600)
    with thread_server(cfg) as url:
        ids = []
        for rec in records(frame):
            r = httpx.post(f"{url}/v2/models/churn/records", json={"records": [rec]})
            ids.append(r.json()["id"])
        r = httpx.post(f"{url}/v2/models/churn/feedback",
                       json={"records": [{"id": i, "label": int(y)} for i, y in zip(ids, churn_label(frame))]})
        assert r.status_code == 200
        time.sleep(2.0)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            requested: list[str] = []
            answers: dict[str, dict] = {}
            page.on("request", lambda req: requested.append(req.url))

            def keep(resp) -> None:
                if "/ui/api/" in resp.url and resp.status == 200:
                    answers[resp.url.split("/ui/api/")[1].split("?")[0]] = json.loads(resp.body())

            page.on("response", keep)
            page.goto(f"{url}/ui/?every=600000")
            page.wait_for_selector("#status[data-ready='1']", timeout=30_000)
            page.wait_for_selector("#perf tbody tr", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert all(u.startswith(url) for u in requested), [u for u in requested if not u.startswith(url)]
            assert {"models", "live", "drift", "perf"} <= set(answers)
            # models: the served version with its digest
            rows = page.eval_on_selector_all("#models tbody tr", "els => els.map(e => e.innerText)")
            assert any("churn" in r and "yes" in r for r in rows)
            # live traffic: each shown value is the API's
            live = next(m for m in answers["live"]["models"] if m["model"] == "churn")
            shown = _values(page, "#live tbody tr[data-model='churn'] td[data-metric]")
            for k in ("requests_per_second", "latency_p50_ms", "latency_p95_ms", "error_rate"):
                assert _same(shown[k], live[k]), (k, shown[k], live[k])
            # drift: per column, PSI / JS / missing / unseen / rows
            drift = answers["drift"]
            assert drift["rows"] == 150
            assert page.get_attribute("#drift-summary", "data-rows") == "150"
            assert float(page.get_attribute("#drift-summary", "data-share")) == pytest.approx(drift["share"])
            for col in drift["columns"]:
                shown = _values(page, f"#drift tbody tr[data-column='{col['name']}'][data-of='input'] td[data-metric]")
                for k in ("psi", "js", "missing_rate", "unseen_rate", "rows"):
                    assert _same(shown[k], col.get(k)), (col["name"], k, shown[k], col.get(k))
                text = page.inner_text(f"#drift tbody tr[data-column='{col['name']}'][data-of='input'] td[data-metric='drifted']")
                assert text == ("yes" if col["drifted"] else "no")
            assert page.locator("#plots .plot svg rect").count() > 0  # reference vs current distributions
            # performance over time: realised and estimated accuracy per window
            w = answers["perf"]["windows"][0]
            shown = _values(page, "#perf tbody tr td[data-metric]")
            assert _same(shown["predictions"], w["predictions"]) and _same(shown["labelled"], w["labelled"])
            assert _same(shown["realised_accuracy"], w["realised"]["accuracy"])
            assert _same(shown["estimated_accuracy"], w["estimated"]["accuracy"])
            assert w["labelled"] == 150
            page.locator("#perf-chart").screenshot(path=str(ARTIFACTS / "dashboard-perf.png"))
            browser.close()


def test_ui_assets_are_in_the_package_and_open_under_auth(tmp_path, churn_path, monkeypatch):
    from importlib import resources

    for name in ("index.html", "app.js", "app.css"):
        assert resources.files("modelport.monitor").joinpath("static", name).is_file()
    monkeypatch.setenv("MP_TEST_TOKENS", "s3cret")
    cfg = ServeConfig(sources=[str(churn_path)], log=str(tmp_path / "log"), token_env="MP_TEST_TOKENS")
    with thread_server(cfg) as url:
        page = httpx.get(f"{url}/ui/")
        assert page.status_code == 200 and "static/app.js" in page.text and "http" not in page.text.split("<body>")[1]
        assert httpx.get(f"{url}/ui/static/app.js").status_code == 200
        assert httpx.get(f"{url}/ui/api/models").status_code == 401
        ok = httpx.get(f"{url}/ui/api/models", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["models"][0]["name"] == "churn"
        bad = httpx.get(f"{url}/ui/api/drift", headers={"authorization": "Bearer s3cret"})
        assert bad.status_code == 400 and "model" in bad.json()["error"]
        assert httpx.get(f"{url}/ui/api/drift?model=nope", headers={"authorization": "Bearer s3cret"}).status_code == 404
        assert httpx.post(f"{url}/ui/api/models", headers={"authorization": "Bearer s3cret"}).status_code == 405
        assert httpx.get(f"{url}/ui/static/../../etc/passwd", headers={"authorization": "Bearer s3cret"}).status_code == 404
