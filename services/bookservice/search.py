"""Text helpers shared by the search strategies, and the keyword picker of POST /books/search.

Every version normalises text the same way (accents stripped, case folded, punctuation to
spaces), so the versions differ only in how they match and rank, never in what a word is.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Protocol

from services.bookservice.catalog import Book

_NON_WORD = re.compile(r"[\W_]+")

STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up upon very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves s t don ll ve re d m o
    book books novel novels story stories tale tales read reading reader want wants wanted
    looking look find finding something someone somebody anything like liked please recommend
    recommendation kind sort one ones thing things get got need maybe really much many lot
    lots title titles written write wrote author
    """.split()
)


class SearchStrategy(Protocol):
    """What a version plugs in: book ids matching ``query``, best first."""

    def search(self, query: str) -> list[str]: ...


StrategyFactory = Callable[[list[Book]], SearchStrategy]


@lru_cache(maxsize=8192)  # the catalog's fields are normalised again by every app built
def normalize(text: str) -> str:
    """Case-folded text without accents, words separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", stripped.casefold()).split())


def tokenize(text: str) -> list[str]:
    return normalize(text).split()


def query_tokens(query: str) -> list[str]:
    """Distinct query words without stop words; all words when the query is only stop words
    (so a title such as "We" can still be found)."""
    words = list(dict.fromkeys(tokenize(query)))
    content = [w for w in words if w not in STOP_WORDS]
    return content or words


def book_fields(book: Book) -> dict[str, str]:
    """The searchable text of a book, normalised, by field."""
    return {
        "title": normalize(book["title"]),
        "author": normalize(book["author"]),
        "subjects": normalize(" ; ".join(book["subjects"])),
        "description": normalize(book["description"]),
    }


def promote_exact_title(query: str, ids: list[str], title_of: Callable[[str], str]) -> list[str]:
    """Move books whose title equals the query (after normalisation) to the front, keeping the
    strategy's order otherwise. This is the contract every version honours."""
    wanted = normalize(query)
    exact = [i for i in ids if normalize(title_of(i)) == wanted]
    return exact + [i for i in ids if i not in set(exact)]


def document_frequencies(books: Iterable[Book]) -> Counter[str]:
    """How many books mention each word in any field."""
    frequencies: Counter[str] = Counter()
    for book in books:
        words = set()
        for text in book_fields(book).values():
            words.update(text.split())
        frequencies.update(words)
    return frequencies


def _catalog_form(word: str, frequencies: Mapping[str, int]) -> str:
    """The word as the catalog spells it, trying a crude singular for plurals."""
    if frequencies.get(word):
        return word
    for suffix in ("es", "s"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and frequencies.get(stem):
            return stem
    return word


def pick_keywords(description: str, frequencies: Mapping[str, int], limit: int = 3) -> list[str]:
    """Up to ``limit`` search keywords from a free-text description.

    Stop words and words shorter than three letters are dropped. Words the catalog knows come
    first, rarer before commoner (a rare word narrows the search most), then longer before
    shorter, then earlier in the description. Unknown words only fill the remaining places.
    """
    candidates: dict[str, int] = {}
    for position, token in enumerate(tokenize(description)):
        if len(token) < 3 or token in STOP_WORDS:
            continue
        candidates.setdefault(_catalog_form(token, frequencies), position)

    def rank(item: tuple[str, int]) -> tuple[bool, int, int, int]:
        word, position = item
        seen = frequencies.get(word, 0)
        return (seen == 0, seen, -len(word), position)

    return [word for word, _ in sorted(candidates.items(), key=rank)[:limit]]


def rank_by_keywords(hits: list[list[str]]) -> list[str]:
    """Merge one ranked id list per keyword: books matching more keywords first, then books
    ranked higher within those lists, then first appearance."""
    score: dict[str, tuple[int, float]] = {}
    for ids in hits:
        for rank, book_id in enumerate(ids):
            count, weight = score.get(book_id, (0, 0.0))
            score[book_id] = (count + 1, weight + 1.0 / (rank + 1))
    order = {book_id: n for n, book_id in enumerate(score)}
    return sorted(score, key=lambda i: (-score[i][0], -score[i][1], order[i]))
