"""The canary is configuration; its defaults are a contract with the shipped catalog."""

import importlib

import httpx
import pytest
from fastapi.testclient import TestClient

from monitor.config import Settings
from monitor.failover.canary import (
    Canary,
    PinError,
    book_digest,
    env_lines,
    read_canary,
    write_env,
)

BOOK = {"id": "b1", "title": "Moby-Dick", "year": 1851}


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_it_ships_defaults_that_match_the_shipped_catalog(version):
    defaults = Settings(_env_file=None).canary()
    app = importlib.import_module(f"services.{version}").create_app(chaos_token=None)
    with TestClient(app) as client:
        items = client.get("/books", params={"q": defaults.query, "limit": 1}).json()["items"]
    assert items[0]["id"] == defaults.book_id
    assert book_digest(items[0]) == defaults.digest


def test_it_digests_canonical_json_whatever_the_key_order():
    reordered = {"year": 1851, "title": "Moby-Dick", "id": "b1"}
    assert book_digest(reordered) == book_digest(BOOK)
    assert book_digest({**BOOK, "year": 1852}) != book_digest(BOOK)


def _client(handler):
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_it_reads_the_first_book_of_the_query_as_the_canary():
    seen = []

    def handler(request):
        seen.append(dict(request.url.params))
        return httpx.Response(200, json={"items": [BOOK, {"id": "other"}]})

    with _client(handler) as client:
        canary = read_canary(client, "http://svc.test", "Moby-Dick")
    assert canary == Canary("Moby-Dick", "b1", book_digest(BOOK))
    assert seen == [{"q": "Moby-Dick", "limit": "1"}]


@pytest.mark.parametrize("response, reason", [
    (httpx.Response(200, json={"items": []}), "found no book"),
    (httpx.Response(200, json={"items": [{"title": "no id"}]}), "found no book"),
    (httpx.Response(503, json={}), "answered 503"),
    (httpx.Response(200, text="not json"), "without a JSON object"),
])
def test_it_refuses_to_pin_an_answer_without_a_book(response, reason):
    with _client(lambda request: response) as client, pytest.raises(PinError, match=reason):
        read_canary(client, "http://svc.test", "Moby-Dick")


def test_it_sets_the_canary_in_env_and_keeps_every_other_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# mine\nMONITOR_PORT=9000\nMONITOR_CANARY_DIGEST=old\n")
    write_env(env, env_lines(Canary("Moby Dick", "b1", "a" * 64)))
    assert env.read_text().splitlines() == [
        "# mine", "MONITOR_PORT=9000", "MONITOR_CANARY_DIGEST=" + "a" * 64,
        'MONITOR_CANARY_QUERY="Moby Dick"', 'MONITOR_CANARY_BOOK_ID="b1"']
    settings = Settings(_env_file=env)
    assert settings.canary() == Canary("Moby Dick", "b1", "a" * 64)
    assert settings.port == 9000


def test_it_creates_a_private_env_file(tmp_path):
    env = tmp_path / ".env"
    write_env(env, {"MONITOR_CANARY_DIGEST": "b" * 64})
    assert env.stat().st_mode & 0o077 == 0
    assert env.read_text() == "MONITOR_CANARY_DIGEST=" + "b" * 64 + "\n"


def test_it_refuses_to_pin_from_an_unreachable_version_and_changes_nothing(
        tmp_path, monkeypatch, capsys):
    from monitor.__main__ import main
    from monitor.storage.store import Store
    from tests.support import audit_rows

    for name in [n for n in __import__("os").environ if n.startswith("MONITOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MONITOR_SERVICES", "v1=http://127.0.0.1:9,v2=http://127.0.0.1:7")
    (tmp_path / ".env").write_text("MONITOR_PORT=9000\n")

    assert main(["canary", "pin"]) == 1
    assert "error: http://127.0.0.1:9 did not answer" in capsys.readouterr().err
    assert (tmp_path / ".env").read_text() == "MONITOR_PORT=9000\n"
    store = Store(f"sqlite:///{tmp_path / 'data' / 'monitor.db'}")
    assert audit_rows(store, "canary.pin") == []
    store.dispose()
