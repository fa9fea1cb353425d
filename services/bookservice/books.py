"""The book routes: list and filter, fetch one, search by free-text description."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.bookservice.catalog import Book
from services.bookservice.search import (
    normalize,
    pick_keywords,
    promote_exact_title,
    rank_by_keywords,
)
from services.bookservice.service import Service


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=2000)
    limit: int = Field(20, ge=1, le=100)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("description must not be blank")
        return value


def find_books(
    service: Service, q: str | None, author: str | None, subject: str | None
) -> list[Book]:
    """Books matching the query (ranked by the version's strategy, exact title first) and the
    filters: ``author`` is a substring of the author's name, ``subject`` one whole subject."""
    catalog = service.catalog
    if q is None:
        books = list(catalog.books)
    else:
        ids = service.strategy.search(q)
        ids = promote_exact_title(q, ids, catalog.title)
        books = [book for book in map(catalog.get, ids) if book is not None]
    if author is not None:
        wanted = normalize(author)
        books = [b for b in books if wanted in normalize(b["author"])]
    if subject is not None:
        wanted = normalize(subject)
        books = [b for b in books if wanted in {normalize(s) for s in b["subjects"]}]
    return books


def _not_blank(name: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", name),
                    "msg": f"{name} must not be blank",
                    "input": value,
                }
            ]
        )


def books_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["books"])

    @router.get("/books")
    async def list_books(
        q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        author: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        subject: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict:
        for name, value in (("q", q), ("author", author), ("subject", subject)):
            _not_blank(name, value)
        books = find_books(service, q, author, subject)
        return {
            "total": len(books),
            "limit": limit,
            "offset": offset,
            "items": books[offset : offset + limit],
        }

    # before /books/{book_id}: a 405 for /books/search must name POST in `Allow`
    @router.post("/books/search")
    async def search_books(request: SearchRequest) -> dict:
        keywords = pick_keywords(request.description, service.frequencies)
        ids = rank_by_keywords([service.strategy.search(word) for word in keywords])
        books = [book for book in map(service.catalog.get, ids) if book is not None]
        return {"total": len(books), "keywords": keywords, "items": books[: request.limit]}

    @router.get("/books/{book_id}")
    async def get_book(book_id: str) -> dict:
        book = service.catalog.get(book_id)
        if book is None:
            raise HTTPException(status_code=404, detail="book not found")
        return book

    return router
