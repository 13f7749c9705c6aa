"""Store what the database accepts of a batch, and isolate what it refuses, in savepoints of one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def store_isolating(
    session: Session, items: list[Item], store: Callable[[list[Item]], Outcome]
) -> tuple[list[Outcome], list[tuple[Item, DBAPIError]]]:
    """`store(items)` in a savepoint; when the database refuses it, each half on its own, down to the single items it
    refuses. Returns the outcomes of the parts stored and the refused items with their errors. The normal path is
    one savepoint; a batch with refused items splits into at most log2(n) levels.

    Only a value or constraint the database refuses (IntegrityError, DataError) is an item's fault; anything else
    (a missing table, no permission, an outage) propagates: it would refuse every item, and draining a line into the
    dead-letter topic would hide it.
    """
    if not items:
        return [], []
    try:
        with session.begin_nested():
            return [store(items)], []
    except (IntegrityError, DataError) as exc:
        if len(items) == 1:
            return [], [(items[0], exc)]
        middle = len(items) // 2
        first, first_refused = store_isolating(session, items[:middle], store)
        second, second_refused = store_isolating(session, items[middle:], store)
        return first + second, first_refused + second_refused
