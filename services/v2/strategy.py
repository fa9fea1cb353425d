"""v2 search: an inverted index of words; every query word must match; ranked by field-weighted
term frequency times inverse document frequency."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from services.bookservice.catalog import Book
from services.bookservice.search import book_fields, query_tokens

FIELD_WEIGHTS = {"title": 4.0, "author": 3.0, "subjects": 2.0, "description": 1.0}


class TokenRankedSearch:
    def __init__(self, books: list[Book]) -> None:
        self._ids = [book["id"] for book in books]
        self._postings: dict[str, dict[int, float]] = defaultdict(dict)
        for position, book in enumerate(books):
            weights: Counter[str] = Counter()
            for field, text in book_fields(book).items():
                for word in text.split():
                    weights[word] += FIELD_WEIGHTS[field]
            for word, weight in weights.items():
                self._postings[word][position] = weight

    def _idf(self, word: str) -> float:
        return math.log(1 + len(self._ids) / len(self._postings[word]))

    def search(self, query: str) -> list[str]:
        words = query_tokens(query)
        if not words or any(word not in self._postings for word in words):
            return []
        matches = set.intersection(*(set(self._postings[word]) for word in words))
        score = {p: sum(self._postings[w][p] * self._idf(w) for w in words) for p in matches}
        return [self._ids[p] for p in sorted(matches, key=lambda p: (-score[p], p))]
