"""The NATS adapter on the real server: streams and consumers it makes or refuses."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.stream.base import SourceOptions, open_sink, open_source

pytestmark = pytest.mark.integration


def test_sink_creates_a_stream_with_a_duplicate_window(nts):
    sink = open_sink(f"{nts.url}?subject={nts.out_subject}&stream={nts.out_stream}&duplicate_window=90")
    assert sink.deduplicates and sink.window == 90

    async def info(nc, js):
        return await js.stream_info(nts.out_stream)

    i = nts.run(info)
    assert i.config.subjects == [nts.out_subject] and i.config.duplicate_window == 90


def test_source_creates_its_stream_and_durable(nts):
    src = open_source(nts.source(), SourceOptions("c", redeliver_after=7))
    assert src.stream == nts.stream
    cfg = nts.consumer().config
    assert cfg.ack_wait == 7 and cfg.filter_subject == nts.subject and cfg.deliver_subject is None
    assert src.read(10, 0.05) == []
    src.close()


def test_a_default_dead_letter_subject_the_source_would_read_again_is_refused(nts):
    # the stream's own name as the subject prefix: STREAM.dead-letter is one of its subjects
    src = open_source(f"{nts.url}?stream={nts.stream}&subject={nts.stream}.>&durable=all", SourceOptions("c"))
    with pytest.raises(InputError, match="would be read again by this source"):
        src.dead_letter_sink()


def test_a_durable_with_another_filter_is_refused(nts):
    open_source(nts.source(), SourceOptions("c"))
    with pytest.raises(InputError, match="filters"):
        open_source(f"{nts.url}?stream={nts.stream}&subject=mpt.{nts.tag}.*&durable=scorers", SourceOptions("c"))


def test_a_stream_that_does_not_hold_the_subject_is_refused(nts):
    nts.create()
    with pytest.raises(InputError, match="holds subjects"):
        open_source(f"{nts.url}?stream={nts.stream}&subject=elsewhere&durable=x", SourceOptions("c"))
