import json

import pytest

from services.bookservice.canary import (
    CANARY_BOOK_ID,
    CANARY_QUERY,
    book_digest,
    expected_canary_digest,
)
from services.bookservice.catalog import (
    DATA_FILE,
    Catalog,
    CatalogError,
    checksum,
    corrupted,
    load_books,
)


@pytest.fixture(scope="module")
def books():
    return load_books()


def test_it_ships_at_least_200_well_formed_books(books):
    assert len(books) >= 200
    assert len({b["id"] for b in books}) == len(books)
    assert len({b["title"].casefold() for b in books}) == len(books)
    for book in books:
        assert -800 <= book["year"] <= 1930, book["title"]
        assert 2 <= len(book["language"]) <= 3 and book["language"].islower()
        assert book["subjects"] and all(s == s.lower() for s in book["subjects"])
        assert 10 <= len(book["description"]) <= 200


def test_it_has_the_canary_book_under_its_exact_title(books):
    canary = next(b for b in books if b["id"] == CANARY_BOOK_ID)
    assert canary["title"] == CANARY_QUERY
    assert expected_canary_digest() == book_digest(canary)


def test_it_checksums_order_and_content(books):
    assert checksum(books) == checksum(json.loads(DATA_FILE.read_text(encoding="utf-8")))
    assert checksum(books) != checksum(list(reversed(books)))
    assert checksum(books) != checksum(corrupted(books))


def test_it_digests_books_independently_of_key_order():
    book = {
        "id": "x",
        "title": "T",
        "author": "A",
        "year": 1,
        "language": "en",
        "subjects": ["s"],
        "description": "d.",
    }
    assert book_digest(book) == book_digest(dict(reversed(list(book.items()))))
    assert book_digest(book) != book_digest({**book, "year": 2})


def test_it_corrupts_every_book_but_keeps_titles_and_ids(books):
    bad = corrupted(books)
    assert [b["id"] for b in bad] == [b["id"] for b in books]
    assert [b["title"] for b in bad] == [b["title"] for b in books]
    assert all(book_digest(x) != book_digest(y) for x, y in zip(books, bad, strict=True))


def test_it_restores_the_catalog_after_corruption(books):
    catalog = Catalog(books)
    assert catalog.verify()
    catalog.corrupt()
    assert not catalog.verify()
    assert catalog.get(CANARY_BOOK_ID)["description"] != books[0]["description"]
    catalog.restore()
    assert catalog.verify()
    assert catalog.get(CANARY_BOOK_ID) == books[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty"),
        ('{"id": "x"}', "non-empty JSON list"),
        ('[{"id": "x"}]', "exactly the fields"),
        (
            '[{"id": "x", "title": "T", "author": "A", "year": "1813", "language": "en",'
            ' "subjects": ["s"], "description": "d"}]',
            "'year' must be int",
        ),
        (
            '[{"id": "x", "title": "T", "author": "A", "year": 1, "language": "en",'
            ' "subjects": ["s"], "description": "d"},'
            ' {"id": "x", "title": "U", "author": "A", "year": 1, "language": "en",'
            ' "subjects": ["s"], "description": "d"}]',
            "duplicate book id",
        ),
    ],
)
def test_it_rejects_a_bad_catalog_file(tmp_path, content, message):
    path = tmp_path / "books.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        load_books(path)


def test_it_reports_a_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_books(tmp_path / "missing.json")
