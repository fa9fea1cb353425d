"""The book service contract, identical in every version."""

import pytest
from fastapi.testclient import TestClient

from services.bookservice.canary import CANARY_BOOK_ID, CANARY_QUERY
from services.bookservice.catalog import checksum, load_books
from tests.services.conftest import VERSIONS

pytestmark = pytest.mark.parametrize("version", VERSIONS)


@pytest.fixture
def client(build, version):
    with TestClient(build(version)) as client:
        yield client


@pytest.fixture(scope="module")
def books():
    return load_books()


def titles(response):
    return [book["title"] for book in response.json()["items"]]


def test_it_lists_books_in_pages(client, version, books):
    first = client.get("/books", params={"limit": 5})
    second = client.get("/books", params={"limit": 5, "offset": 5})
    assert first.status_code == second.status_code == 200
    assert set(first.json()) == {"total", "limit", "offset", "items"}
    assert first.json()["total"] == second.json()["total"] == len(books)
    assert first.json()["items"] + second.json()["items"] == books[:10]
    assert client.get("/books").json()["limit"] == 20
    past_the_end = client.get("/books", params={"offset": len(books)}).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == len(books)


@pytest.mark.parametrize(
    "params, status",
    [
        ({"limit": 1}, 200),
        ({"limit": 100}, 200),
        ({"limit": 0}, 422),
        ({"limit": 101}, 422),
        ({"limit": "ten"}, 422),
        ({"offset": 0}, 200),
        ({"offset": -1}, 422),
        ({"q": ""}, 422),
        ({"q": "   "}, 422),
        ({"q": "x" * 200}, 200),
        ({"q": "x" * 201}, 422),
        ({"author": ""}, 422),
        ({"subject": " "}, 422),
    ],
)
def test_it_bounds_query_parameters(client, version, params, status):
    response = client.get("/books", params=params)
    assert response.status_code == status
    if status == 422:
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["query", next(iter(params))]
        assert problem["msg"]


@pytest.mark.parametrize(
    "query, title",
    [
        ("pride and prejudice", "Pride and Prejudice"),
        (CANARY_QUERY, "Pride and Prejudice"),
        ("moby dick", "Moby-Dick"),
        ("Les Miserables", "Les Misérables"),
        ("emma", "Emma"),
        ("We", "We"),
        ("the jungle book", "The Jungle Book"),
        ("war and peace", "War and Peace"),
    ],
)
def test_it_returns_the_exact_title_first(client, version, query, title):
    response = client.get("/books", params={"q": query})
    assert response.status_code == 200
    assert titles(response)[0] == title


def test_it_serves_the_canary_book_exactly_as_shipped(client, version, books):
    response = client.get("/books", params={"q": CANARY_QUERY, "limit": 1})
    assert response.json()["items"] == [next(b for b in books if b["id"] == CANARY_BOOK_ID)]


@pytest.mark.parametrize(
    "params, check",
    [
        ({"author": "austen"}, lambda b: b["author"] == "Jane Austen"),
        ({"author": "Brontë"}, lambda b: "Bront" in b["author"]),
        ({"subject": "Gothic"}, lambda b: "gothic" in b["subjects"]),
        ({"subject": "science fiction"}, lambda b: "science fiction" in b["subjects"]),
        ({"q": "holmes", "subject": "short stories"}, lambda b: "Sherlock" in b["title"]),
    ],
)
def test_it_filters_by_author_and_subject(client, version, books, params, check):
    body = client.get("/books", params={**params, "limit": 100}).json()
    assert body["total"] == len(body["items"]) > 0
    assert all(check(book) for book in body["items"])


def test_it_matches_a_subject_only_as_a_whole(client, version):
    assert client.get("/books", params={"subject": "science"}).json()["total"] == sum(
        1 for b in load_books() if "science" in b["subjects"]
    )
    assert client.get("/books", params={"subject": "fiction"}).json()["total"] == 0


def test_it_gets_one_book_or_404(client, version, books):
    assert client.get(f"/books/{CANARY_BOOK_ID}").json() == books[0]
    missing = client.get("/books/no-such-book")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "book not found"}


@pytest.mark.parametrize(
    "description, keywords, first",
    [
        (
            "a story about a whale hunt at sea with an obsessed captain",
            ["whale", "obsessed", "captain"],
            "Moby-Dick",
        ),
        (
            "a boy and a raft on the mississippi river with an escaped slave",
            ["escaped", "raft", "slave"],
            "Adventures of Huckleberry Finn",
        ),
        (
            "a puppet whose nose grows when he lies",
            ["puppet", "grows", "nose"],
            "The Adventures of Pinocchio",
        ),
        ("Martians invade England", ["martians", "invade", "england"], "The War of the Worlds"),
        (
            "a submarine captain under the ocean",
            ["submarine", "captain", "ocean"],
            "Twenty Thousand Leagues Under the Seas",
        ),
    ],
)
def test_it_searches_by_description(client, version, description, keywords, first):
    response = client.post("/books/search", json={"description": description})
    assert response.status_code == 200
    body = response.json()
    assert body["keywords"] == keywords
    assert body["total"] >= len(body["items"]) >= 1
    assert body["items"][0]["title"] == first


def test_it_finds_nothing_for_a_description_of_stop_words(client, version):
    body = client.post("/books/search", json={"description": "I want a book about it"}).json()
    assert body == {"total": 0, "keywords": [], "items": []}


@pytest.mark.parametrize(
    "body",
    [
        {"description": ""},
        {"description": "   "},
        {"description": "x" * 2001},
        {},
        {"description": "whale", "limit": 0},
        {"description": "whale", "extra": 1},
    ],
)
def test_it_rejects_bad_descriptions(client, version, body):
    response = client.post("/books/search", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"]


def test_it_accepts_a_description_of_2000_characters(client, version):
    assert (
        client.post("/books/search", json={"description": "whale " * 333 + "ab"}).status_code == 200
    )


def test_it_reports_ready_with_a_verified_checksum(client, version, books, clock):
    clock.advance(5)
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"] == version
    assert body["catalog_checksum"] == checksum(books)
    assert body["checksum_verified"] is True
    assert body["uptime_s"] == 5
    assert isinstance(body["cpu_percent"], float) and body["rss_bytes"] > 0
    assert body["faults"] == {}
    assert client.get("/health/live").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/books", 200),
        ("GET", "/books/no-such-book", 404),
        ("GET", "/books?limit=0", 422),
        ("POST", "/books/search", 422),
        ("GET", "/health", 200),
        ("GET", "/health/live", 200),
        ("GET", "/chaos", 401),
        ("GET", "/nowhere", 404),
    ],
)
def test_it_stamps_every_response_with_its_version(client, version, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["X-Service-Version"] == version


@pytest.mark.parametrize("docs, status", [(False, 404), (True, 200)])
def test_it_serves_api_docs_only_when_asked(build, version, docs, status):
    with TestClient(build(version, docs=docs)) as client:
        assert client.get("/docs").status_code == status
        assert client.get("/openapi.json").status_code == status
