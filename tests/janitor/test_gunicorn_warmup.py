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
