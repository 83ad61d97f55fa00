"""Broker URLs and the scheme table (no server needed)."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.stream.base import SCHEMES, SourceOptions, StreamURL, open_sink, open_source
from modelport.stream.nats import subject_matches


def test_url_parsing():
    u = StreamURL.parse("redis://user:secret@localhost:6379/2?stream=events&group=scorers")
    assert (u.scheme, u.netloc, u.path) == ("redis", "user:secret@localhost:6379", "/2")
    assert u.get("stream") == "events" and u.require("group", "") == "scorers"
    assert "secret" not in u.safe and ":***@" in u.safe
    assert StreamURL.parse("-").scheme == "jsonl"
    assert StreamURL.parse("events.jsonl").scheme == "jsonl"
    assert StreamURL.parse("/data/events.jsonl").path == "/data/events.jsonl"


def test_unknown_parameters_and_duplicates_are_refused():
    u = StreamURL.parse("redis://localhost/0?stream=a&colour=red")
    u.get("stream")
    with pytest.raises(InputError, match=r"unknown parameter\(s\) colour; this broker takes: stream"):
        u.check_unused("sink")
    with pytest.raises(InputError, match="given twice"):
        StreamURL.parse("redis://localhost/0?stream=a&stream=b")
    with pytest.raises(InputError, match="must be a number"):
        StreamURL.parse("nats://x?duplicate_window=soon").number("duplicate_window", 1.0)


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(InputError, match="scheme 'kafka'") as info:
        open_source("kafka://localhost:9092", SourceOptions("c"))
    assert "redis://" in str(info.value) and "nats://" in str(info.value)
    with pytest.raises(InputError, match="scheme 'amqp'"):
        open_sink("amqp://localhost")
    assert {"redis", "rediss", "nats", "file", "jsonl"} <= set(SCHEMES)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the source file"):
        open_source(str(tmp_path / "missing.jsonl"), SourceOptions("c"))


@pytest.mark.parametrize(("pattern", "subject", "match"), [
    ("events.>", "events.a", True), ("events.>", "events.a.b", True), ("events.>", "events", False),
    ("events.*", "events.a", True), ("events.*", "events.a.b", False), ("scores", "scores", True),
    ("scores", "scores.dead-letter", False), (">", "anything.at.all", True), ("a.*.c", "a.b.c", True),
])
def test_subject_matching(pattern, subject, match):
    assert subject_matches(pattern, subject) is match


def test_observe_many_is_observe_for_each_value():
    import numpy as np

    from modelport.serve.metrics import Family
    from modelport.stream.metrics import observe_many

    bounds = (0.001, 0.01, 0.1, 1.0)
    one, many = Family("a", "", "histogram", [], bounds).labels(), Family("b", "", "histogram", [], bounds).labels()
    values = np.array([0.0, 0.001, 0.0010001, 0.05, 0.1, 3.0, 0.5, 0.5])
    for v in values:
        one.observe(float(v))
    observe_many(many, values)
    assert many.counts == one.counts and many.count == one.count and many.sum == pytest.approx(one.sum)
