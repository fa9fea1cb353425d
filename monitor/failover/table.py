"""The index the engine keeps beside a monitor state's health tuple (see MonitorState.table).

One observation must cost O(1) in the number of versions, so the state carries, derived from
its health tuple: each version's position, how many versions have a result and how many are
DOWN. ``durable`` is replaced whenever a version's persisted fields (ejections) change, so
"did the persisted record change?" is an identity check (model.record_changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.failover.model import Health


@dataclass(frozen=True, eq=False)
class Table:
    health: tuple[Health, ...]
    index: Mapping[str, int]
    probed: int
    down: int
    durable: object

    @classmethod
    def of(cls, health: tuple[Health, ...]) -> Table:
        return cls(health, {h.name: i for i, h in enumerate(health)},
                   sum(h.probed for h in health), sum(h.down for h in health), object())

    def put(self, new: Health) -> Table:
        """The table with ``new`` in place of the version of that name (KeyError if none)."""
        i = self.index[new.name]
        old = self.health[i]
        durable = self.durable if (old.ejections, old.ejected_until) == \
            (new.ejections, new.ejected_until) else object()
        return Table(self.health[:i] + (new,) + self.health[i + 1:], self.index,
                     self.probed + new.probed - old.probed, self.down + new.down - old.down,
                     durable)
