import pytest

from services.bookservice.catalog import load_books
from services.bookservice.search import (
    document_frequencies,
    normalize,
    pick_keywords,
    promote_exact_title,
    query_tokens,
    rank_by_keywords,
)
from services.v1.strategy import SubstringSearch
from services.v2.strategy import TokenRankedSearch
from services.v3.strategy import Fts5Search

STRATEGIES = [SubstringSearch, TokenRankedSearch, Fts5Search]


@pytest.fixture(scope="module")
def books():
    return load_books()


@pytest.fixture(scope="module")
def frequencies(books):
    return document_frequencies(books)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Les Misérables", "les miserables"),
        ("  Moby-Dick;   or, THE Whale ", "moby dick or the whale"),
        ("Pudd'nhead Wilson", "pudd nhead wilson"),
        ("Švejk_and_Čapek", "svejk and capek"),
        ("!!!", ""),
    ],
)
def test_it_normalizes_text(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "query, tokens",
    [
        ("pride and prejudice", ["pride", "prejudice"]),
        ("The The war", ["war"]),
        ("We", ["we"]),  # only stop words: keep them, so the title "We" is findable
        ("...", []),
    ],
)
def test_it_turns_a_query_into_tokens(query, tokens):
    assert query_tokens(query) == tokens


@pytest.mark.parametrize(
    "description, keywords",
    [
        (
            "a story about a whale hunt at sea with an obsessed captain",
            ["whale", "obsessed", "captain"],
        ),
        ("Vampires in a castle in Transylvania", ["vampire", "castle", "transylvania"]),
        ("a puppet whose nose grows when he lies", ["puppet", "grows", "nose"]),
        ("Martians invade England", ["martians", "invade", "england"]),
        ("submarine", ["submarine"]),
        ("I want a novel, please recommend a book", []),  # only stop words
        ("an ox by a cat", ["cat"]),  # too short words are dropped
        ("zyzzyva quokka whale", ["whale", "zyzzyva", "quokka"]),  # known words first
        ("whale whale WHALE", ["whale"]),
    ],
)
def test_it_picks_up_to_three_keywords(frequencies, description, keywords):
    assert pick_keywords(description, frequencies) == keywords


def test_it_prefers_rarer_then_longer_keywords():
    frequencies = {"common": 50, "rare": 1, "rarest": 1, "middle": 5}
    assert pick_keywords("common middle rare rarest", frequencies) == ["rarest", "rare", "middle"]


def test_it_ranks_books_matching_more_keywords_first():
    assert rank_by_keywords([["a", "b"], ["c", "b"], ["b"]]) == ["b", "a", "c"]
    assert rank_by_keywords([]) == []


def test_it_promotes_exact_titles_keeping_the_rest_in_order():
    titles = {"1": "Emma in Love", "2": "Emma", "3": "Dilemma"}
    assert promote_exact_title("EMMA", ["1", "2", "3"], titles.__getitem__) == ["2", "1", "3"]
    assert promote_exact_title("nothing", ["1", "2"], titles.__getitem__) == ["1", "2"]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_it_finds_every_book_first_by_its_exact_title(books, strategy):
    search = strategy(books)
    title = {b["id"]: b["title"] for b in books}
    misses = [
        b["title"]
        for b in books
        if promote_exact_title(b["title"], search.search(b["title"]), title.__getitem__)[:1]
        != [b["id"]]
    ]
    assert misses == []


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
@pytest.mark.parametrize(
    "query, must_include",
    [
        ("whale", {"moby-dick"}),
        ("holmes", {"a-study-in-scarlet", "the-hound-of-the-baskervilles"}),
        ("mark twain", {"the-innocents-abroad", "pudd-nhead-wilson"}),
        ("les miserables", {"les-miserables"}),
        ("MISÉRABLES", {"les-miserables"}),
    ],
)
def test_it_matches_words_in_any_field(books, strategy, query, must_include):
    assert must_include <= set(strategy(books).search(query))


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
@pytest.mark.parametrize("query", ["", "!!!", "qwertyuiop", 'x" OR "y', "title:*"])
def test_it_returns_nothing_for_queries_without_matches(books, strategy, query):
    assert strategy(books).search(query) == []
