"""gunicorn's post_worker_init hook warms a new worker: views imported, database connected."""

import importlib.util
import logging
from pathlib import Path

import pytest
from django.db import connection

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


class _Worker:
    log = logging.getLogger("gunicorn.error")


def _conf():
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres  # SQLite keeps its in-memory test database open
@pytest.mark.django_db(transaction=True)  # outside a test transaction, so close() closes
def test_a_new_worker_is_warmed_before_its_first_request():
    connection.close()
    assert connection.connection is None
    _conf().post_worker_init(_Worker())
    assert connection.connection is not None  # the first request finds it open


@pytest.mark.django_db
def test_a_database_that_is_down_does_not_stop_the_worker(settings, caplog, monkeypatch):
    def refuse():
        raise ConnectionError("database is down")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        _conf().post_worker_init(_Worker())
    assert "no database connection yet" in caplog.text


@pytest.fixture(autouse=True)
def _no_batcher_left():
    from reconciliation.services.webhooks import webhook_enqueue_batching_stop

    yield
    webhook_enqueue_batching_stop()


@pytest.mark.django_db
def test_a_new_worker_hands_webhook_events_to_the_queue_in_batches(settings, monkeypatch):
    from django_q.conf import Conf

    from reconciliation.services.webhooks import intake, webhook_enqueue_batching_stop

    monkeypatch.setattr(Conf, "SYNC", False)  # the suite's queue runs tasks inline
    settings.JANITOR_WEBHOOK_ENQUEUE_BATCH_MS = 50
    try:
        _conf().post_worker_init(_Worker())
        assert intake._batcher is not None and intake._batcher.thread.is_alive()
    finally:
        webhook_enqueue_batching_stop()
    assert intake._batcher is None


@pytest.mark.django_db
def test_batching_off_leaves_one_enqueue_per_request(settings, monkeypatch):
    from django_q.conf import Conf

    from reconciliation.services.webhooks import intake

    monkeypatch.setattr(Conf, "SYNC", False)
    settings.JANITOR_WEBHOOK_ENQUEUE_BATCH_MS = 0
    _conf().post_worker_init(_Worker())
    assert intake._batcher is None


@pytest.mark.django_db
def test_an_inline_queue_is_never_batched(settings):
    from reconciliation.services.webhooks import intake

    # Tasks that run inline would run in the batcher's thread: they stay in the request.
    settings.JANITOR_WEBHOOK_ENQUEUE_BATCH_MS = 50
    _conf().post_worker_init(_Worker())
    assert intake._batcher is None
