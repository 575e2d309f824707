"""``mailer daemon --metrics-port``: the same store metrics from prometheus_client's own HTTP server."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from mailer.config import Settings
from mailer.errors import MailerError
from mailer.service import metrics
from tests.support.outcomes import pass_with_every_outcome
from tests.support.ports import free_port


def test_the_metrics_port_serves_the_store_counts(settings: Settings, engine: Engine) -> None:
    pass_with_every_outcome(engine, settings)
    port = free_port()
    stop = metrics.serve(engine, settings, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            body = response.read().decode()
    finally:
        stop()
    queue = {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "mailer_queue_rows"
    }
    assert {queue["sent"], queue["deferred"], queue["failed"], queue["unknown"]} == {1}


def test_a_taken_metrics_port_is_one_line(settings: Settings, engine: Engine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MailerError, match=rf"^--metrics-port {port}: cannot listen on 127.0.0.1: "):
            metrics.serve(engine, settings, "127.0.0.1", port)
