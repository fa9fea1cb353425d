"""The canary a monitor uses to catch a service whose /health lies.

The monitor asks ``GET /books?q=CANARY_QUERY&limit=1`` and compares ``book_digest(items[0])``
with ``expected_canary_digest()``, computed from the shipped data file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.bookservice.catalog import DATA_FILE, Book, canonical_json, load_books

CANARY_BOOK_ID = "pride-and-prejudice"
CANARY_QUERY = "Pride and Prejudice"


def book_digest(book: Book) -> str:
    """sha256 hex digest of the canonical JSON of one book."""
    return hashlib.sha256(canonical_json(book)).hexdigest()


def expected_canary_digest(path: Path | str = DATA_FILE) -> str:
    """Digest of the canary book as shipped; raises KeyError if the file lacks it."""
    for book in load_books(path):
        if book["id"] == CANARY_BOOK_ID:
            return book_digest(book)
    raise KeyError(f"canary book {CANARY_BOOK_ID!r} not in {path}")
