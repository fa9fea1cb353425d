"""Routing by service: the default service at /books, another one NAME at /NAME/books (the
prefix stripped), everything else 404; each service its own router, evidence and counts."""

from __future__ import annotations

import pytest

from tests.gateway.test_gateway import FakeMetrics, FakeRouter, gateway_client


class FilmRouter(FakeRouter):
    """The film service: the same version names as the books' on other backends."""

    def route_candidates(self):
        return [(v, f"http://film-{v}.test:900{v[1]}") for v in self.versions]


def film_client(books: FakeRouter, films: FakeRouter, behaviour=None, **options):
    return gateway_client(books, behaviour or {}, services={b"films": films}, **options)


@pytest.mark.parametrize("method, path, status, backend_url", [
    ("GET", "/books?q=x", 200, "http://v1.test:8001/books?q=x"),
    ("GET", "/books/42", 200, "http://v1.test:8001/books/42"),
    ("GET", "/films/books?q=x", 200, "http://film-v1.test:9001/books?q=x"),
    ("GET", "/films/books/42?a=1", 200, "http://film-v1.test:9001/books/42?a=1"),
    ("POST", "/films/books/search", 200, "http://film-v1.test:9001/books/search"),
    ("GET", "/films/health", 404, None),            # after stripping: the same allow-list
    ("GET", "/films/chaos/crash", 404, None),
    ("GET", "/films/books/42/more", 404, None),
    ("GET", "/films/books/..", 404, None),
    ("GET", "/films/", 404, None),
    ("GET", "/films", 404, None),
    ("GET", "/films/films/books", 404, None),
    ("GET", "/music/books", 404, None),             # an unknown service
    ("GET", "/Films/books", 404, None),
    ("GET", "/films%2fbooks", 404, None),
    ("GET", "/health", 404, None),
])
async def test_it_routes_by_the_first_path_segment(method, path, status, backend_url):
    client, seen = film_client(FakeRouter(), FilmRouter())
    async with client:
        response = await client.request(method, path, json={"q": "x"} if method == "POST"
                                        else None)
    assert response.status_code == status
    assert [str(r.url) for r in seen] == ([backend_url] if backend_url else [])


@pytest.mark.parametrize("path, detail", [
    ("/music/books", "no such service"),
    ("/films/health", "the gateway forwards only /books"),
])
async def test_it_answers_404_json_that_names_nothing_internal(path, detail):
    client, _ = film_client(FakeRouter(), FilmRouter())
    async with client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "not found", "detail": detail}
    assert "film" not in response.text and "v1" not in response.text


async def test_it_reports_a_failure_to_the_service_that_had_it():
    books, films = FakeRouter(), FilmRouter()
    client, seen = film_client(books, films, {"film-v1": 503})
    async with client:
        response = await client.get("/films/books?q=a")
    assert response.status_code == 200
    assert response.headers["x-served-by"] == "v2"
    assert [r.url.host for r in seen] == ["film-v1.test", "film-v2.test"]
    assert (films.reports, books.reports) == ([("v1", "http_5xx")], [])


async def test_it_counts_each_services_outcomes_apart():
    books_metrics, counted = FakeMetrics(), {}

    def for_service(name):
        return counted.setdefault(name, FakeMetrics())

    client, _ = film_client(FakeRouter(), FilmRouter(), metrics=books_metrics,
                            service_metrics=for_service)
    async with client:
        await client.get("/books?q=a")
        await client.get("/films/books?q=a")
        await client.get("/films/books?q=b")
    assert books_metrics.calls == [("v1", "ok")]
    assert counted["films"].calls == [("v1", "ok"), ("v1", "ok")]


async def test_it_follows_the_table_as_services_come_and_go():
    table: dict[bytes, FakeRouter] = {}
    client, _ = gateway_client(FakeRouter(), {}, services=table)
    async with client:
        before = await client.get("/films/books")
        table[b"films"] = FilmRouter()
        during = await client.get("/films/books")
        del table[b"films"]
        after = await client.get("/films/books")
    assert [before.status_code, during.status_code, after.status_code] == [404, 200, 404]


async def test_it_answers_503_for_a_known_service_without_an_up_version():
    client, seen = film_client(FakeRouter(), FilmRouter(versions=()))
    async with client:
        response = await client.get("/films/books")
    assert response.status_code == 503 and seen == []
