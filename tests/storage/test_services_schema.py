"""Migration 0007: rows written before services exist become the default service's."""

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import select

from monitor.storage.schema import alembic_config, migrate
from monitor.storage.store import DEFAULT_SERVICE, ProbeRollup, StaleEpoch, Store
from tests.storage.postgres import BACKENDS, empty_database_url


@pytest.fixture
def at_0006(request, tmp_path):
    """A database at revision 0006 holding one row of every table that gains a service."""
    store = Store(empty_database_url(request, tmp_path))
    with store.writer.connect() as connection:
        command.upgrade(alembic_config(connection), "0006")
        connection.commit()
        for statement in (
            "INSERT INTO monitor_state (id, epoch, active, record, updated_at) "
            "VALUES (1, 4, 'v2', '{\"active\": \"v2\", \"epoch\": 4}', 0)",
            "INSERT INTO probe (version, at, ok, detail, passive) "
            "VALUES ('v1', 1, true, '', false)",
            "INSERT INTO probe_rollup (version, bucket, count, ok_count, latency_sum, "
            "latency_max) VALUES ('v1', 60, 3, 3, 3.0, 1.0)",
            "INSERT INTO incident (kind, opened_at, summary) VALUES ('all_down', 1, '')",
            "INSERT INTO notice (message_id, kind, subject, payload, created_at, status, "
            "attempts, next_attempt_at, last_error) "
            "VALUES ('<m@x>', 'failover', 's', '{}', 1, 'pending', 0, 0, '')",
        ):
            connection.execute(text(statement))
        connection.commit()
    yield store
    store.dispose()


@pytest.mark.parametrize("at_0006", BACKENDS, indirect=True)
def test_it_upgrades_every_existing_row_to_the_default_service(at_0006):
    migrate(at_0006, models_too=False)
    with at_0006.read() as session:
        for table in ("monitor_state", "probe", "probe_rollup", "incident", "notice"):
            query = text(f"SELECT service FROM {table}")  # noqa: S608 - fixed names
            services = session.execute(query).scalars().all()
            assert services == [DEFAULT_SERVICE], table
    assert at_0006.load_state() == {"active": "v2", "epoch": 4}
    assert at_0006.load_state("films") is None


@pytest.mark.parametrize("at_0006", BACKENDS, indirect=True)
def test_it_keeps_a_rollup_per_service_for_the_same_minute(at_0006):
    migrate(at_0006, models_too=False)
    with at_0006.write() as session:
        session.add(ProbeRollup(version="v1", bucket=60, count=1, service="films"))
    with at_0006.read() as session:
        rows = session.exec(select(ProbeRollup).order_by(ProbeRollup.service)).all()
        assert [(r.service, r.count) for r in rows] == [("books", 3), ("films", 1)]


def test_it_keeps_one_state_row_and_epoch_per_service(sqlite_store):
    store = sqlite_store
    with store.write() as session:
        store.save_state(session, {"active": "v1", "epoch": 0}, expected_epoch=None, now=1)
        store.save_state(session, {"active": "a", "epoch": 0}, expected_epoch=None, now=1,
                         service="films")
    with store.write() as session:
        store.save_state(session, {"active": "b", "epoch": 1}, expected_epoch=0, now=2,
                         service="films")
    with pytest.raises(StaleEpoch), store.write() as session:
        store.save_state(session, {"active": "c", "epoch": 2}, expected_epoch=0, now=3,
                         service="films")
    with pytest.raises(StaleEpoch), store.write() as session:
        store.save_state(session, {"active": "b", "epoch": 0}, expected_epoch=None, now=3,
                         service="films")
    assert store.load_state() == {"active": "v1", "epoch": 0}
    assert store.load_state("films") == {"active": "b", "epoch": 1}
