"""The book catalog: load the shipped data file, checksum it, corrupt and restore it in memory."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

Book = dict[str, Any]

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "books.json"
BOOK_FIELDS = {
    "id": str,
    "title": str,
    "author": str,
    "year": int,
    "language": str,
    "subjects": list,
    "description": str,
}


class CatalogError(ValueError):
    """The data file is missing, malformed or has invalid books."""


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace: the form every checksum is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(books: list[Book]) -> str:
    """sha256 hex digest of the canonical JSON of the whole book list (order matters)."""
    return hashlib.sha256(canonical_json(books)).hexdigest()


def validate(books: Any) -> list[Book]:
    """Return ``books`` when it is a list of well-formed books with unique ids, else raise."""
    if not isinstance(books, list) or not books:
        raise CatalogError("catalog must be a non-empty JSON list of books")
    seen: set[str] = set()
    for position, book in enumerate(books):
        if not isinstance(book, dict) or set(book) != set(BOOK_FIELDS):
            raise CatalogError(
                f"book #{position} must have exactly the fields {sorted(BOOK_FIELDS)}"
            )
        for field, kind in BOOK_FIELDS.items():
            if not isinstance(book[field], kind) or isinstance(book[field], bool):
                raise CatalogError(f"book #{position} field {field!r} must be {kind.__name__}")
        if not all(isinstance(s, str) and s for s in book["subjects"]):
            raise CatalogError(f"book #{position} subjects must be non-empty strings")
        if book["id"] in seen:
            raise CatalogError(f"duplicate book id {book['id']!r}")
        seen.add(book["id"])
    return books


def load_books(path: Path | str = DATA_FILE) -> list[Book]:
    """Read and validate the catalog file."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from exc
    try:
        books = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"catalog {path} is not valid JSON: {exc}") from exc
    return validate(books)


def corrupted(books: list[Book]) -> list[Book]:
    """A plausibly wrong copy: every description shifted to the next book, every year off by one.

    Titles, authors and ids stay, so searches still find the books, but each book's content
    (and so its digest and the catalog checksum) no longer matches the shipped file.
    """
    shifted = [books[(i + 1) % len(books)]["description"] for i in range(len(books))]
    if len(books) == 1:
        shifted = [books[0]["description"][::-1]]
    return [
        {**book, "description": description, "year": book["year"] + 1}
        for book, description in zip(books, shifted, strict=True)
    ]


class Catalog:
    """The books a service answers from: a pristine copy, the live (possibly corrupted) copy and
    the checksum taken at load, which /health compares with the live copy."""

    def __init__(self, books: list[Book]) -> None:
        self.pristine: list[Book] = copy.deepcopy(validate(books))
        self.expected_checksum = checksum(self.pristine)
        self.books: list[Book] = copy.deepcopy(self.pristine)
        self._by_id = {book["id"]: book for book in self.books}

    @classmethod
    def from_file(cls, path: Path | str = DATA_FILE) -> Catalog:
        return cls(load_books(path))

    def get(self, book_id: str) -> Book | None:
        return self._by_id.get(book_id)

    def title(self, book_id: str) -> str:
        book = self._by_id.get(book_id)
        return "" if book is None else book["title"]

    def corrupt(self) -> None:
        self._replace(corrupted(self.pristine))

    def restore(self) -> None:
        self._replace(copy.deepcopy(self.pristine))

    def current_checksum(self) -> str:
        return checksum(self.books)

    def verify(self) -> bool:
        """Recompute the live checksum and compare it with the one taken at load."""
        return self.current_checksum() == self.expected_checksum

    def _replace(self, books: list[Book]) -> None:
        self.books = books
        self._by_id = {book["id"]: book for book in books}
