"""v1 search: the whole query as a substring of the book's text, title hits first."""

from __future__ import annotations

from services.bookservice.catalog import Book
from services.bookservice.search import book_fields, normalize


class SubstringSearch:
    def __init__(self, books: list[Book]) -> None:
        self._rows = [(book["id"], book_fields(book)) for book in books]

    def search(self, query: str) -> list[str]:
        needle = normalize(query)
        if not needle:
            return []
        ranked: list[tuple[int, int, str]] = []
        for position, (book_id, fields) in enumerate(self._rows):
            if needle in fields["title"]:
                ranked.append((0, position, book_id))
            elif needle in fields["author"]:
                ranked.append((1, position, book_id))
            elif needle in fields["subjects"] or needle in fields["description"]:
                ranked.append((2, position, book_id))
        return [book_id for *_, book_id in sorted(ranked)]
