"""v3 search: an in-memory SQLite FTS5 index built at start, ranked by weighted bm25."""

from __future__ import annotations

import sqlite3
import threading

from services.bookservice.catalog import Book
from services.bookservice.search import book_fields, query_tokens

# bm25 weights by column: id (unindexed), title, author, subjects, description
_RANKED = (
    "SELECT id FROM books WHERE books MATCH ? ORDER BY bm25(books, 0, 10.0, 5.0, 3.0, 1.0), rowid"
)


class Fts5Search:
    def __init__(self, books: list[Book]) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(
            "CREATE VIRTUAL TABLE books USING fts5(id UNINDEXED, title, author, subjects,"
            " description, tokenize='unicode61 remove_diacritics 2')"
        )
        rows = []
        for book in books:
            fields = book_fields(book)
            rows.append(
                (
                    book["id"],
                    fields["title"],
                    fields["author"],
                    fields["subjects"],
                    fields["description"],
                )
            )
        with self._db:
            self._db.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?)", rows)

    def search(self, query: str) -> list[str]:
        words = query_tokens(query)
        if not words:
            return []
        # Words are [\w]+ after normalisation; quoting makes each a plain term, never syntax.
        expression = " ".join(f'"{word}"' for word in words)
        with self._lock:
            return [row[0] for row in self._db.execute(_RANKED, (expression,))]
