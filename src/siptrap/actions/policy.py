"""The progressive policy ladder: each source's step, escalated while its attack goes on,
relaxed one step at a time once it stops. Pure: the clock is passed in.

The paper's closed loop: first "try later" (the proxy answers 503 with Retry-After), then
"forbidden" (403), then the firewall drops it. A source that keeps going for `step_after`
seconds after a step reaches the next; with no activity for `expire` seconds a step falls
back to the one below, and below the first the source is free again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..bounded import BoundedLRU


@dataclass(frozen=True, slots=True)
class Block:
    src_ip: str
    step: int  # index into the ladder
    category: str
    alert_id: str
    since: float  # when the source was first blocked
    step_since: float  # when this step began
    last_seen: float  # the last sign of the attack
    expires: float  # when this step relaxes unless the attack goes on
    count: int  # signs of the attack seen (alerts and requests)
    pushed: float = 0.0  # the expiry last handed to the actions (Kamailio, nftables)

    def to_dict(self, ladder: tuple[str, ...]) -> dict[str, object]:
        return {
            "src_ip": self.src_ip,
            "step": ladder[self.step],
            "category": self.category,
            "alert_id": self.alert_id,
            "since": self.since,
            "step_since": self.step_since,
            "last_seen": self.last_seen,
            "expires": self.expires,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """A source moved on the ladder: `step` None means it is free again."""

    src_ip: str
    previous: str | None
    step: str | None
    category: str
    alert_id: str
    expires: float | None
    reason: str  # alert, persisted, relaxed, expired, lifted; refreshed (same step, new expiry)


class Ladder:
    def __init__(
        self, steps: tuple[str, ...], step_after: float, expire: float, max_sources: int = 10000
    ) -> None:
        self.steps = steps
        self.step_after = step_after
        self.expire = expire
        self.max_sources = max_sources
        # Full: a new source is refused (alert), never an old block evicted, so the table's
        # limit is never what ends a block.
        self.blocks: BoundedLRU[str, Block] = BoundedLRU(max(1, max_sources))

    def alert(self, src_ip: str, category: str, alert_id: str, now: float) -> list[Change]:
        """An alert about the source: blocks it at the first step, or counts as persistence."""
        if src_ip in self.blocks:
            return self.activity(src_ip, now)
        if len(self.blocks) >= self.max_sources:
            return []
        expires = now + self.expire
        block = Block(src_ip, 0, category, alert_id, now, now, now, expires, 1, expires)
        self.blocks[src_ip] = block
        return [self._change(block, None, "alert")]

    def activity(self, src_ip: str, now: float) -> list[Change]:
        """The blocked source is still at it: keep the step, or escalate after step_after."""
        block = self.blocks.get(src_ip)
        if block is None:
            return []
        seen = replace(block, last_seen=now, expires=now + self.expire, count=block.count + 1)
        changes = []
        if now - block.step_since >= self.step_after and block.step + 1 < len(self.steps):
            seen = replace(seen, step=block.step + 1, step_since=now, pushed=seen.expires)
            changes.append(self._change(seen, self.steps[block.step], "persisted"))
        elif seen.expires - block.pushed >= self.expire / 2:
            # Same step, but what Kamailio and nftables hold would expire first: refresh.
            seen = replace(seen, pushed=seen.expires)
            changes.append(self._change(seen, self.steps[block.step], "refreshed"))
        self.blocks[src_ip] = seen
        return changes

    def tick(self, now: float) -> list[Change]:
        """Steps whose expiry passed fall back one (the lowest one frees its source)."""
        changes = []
        for src_ip, block in list(self.blocks.items()):
            if now < block.expires:
                continue
            previous = self.steps[block.step]
            if block.step == 0:
                self.blocks.pop(src_ip)
                changes.append(
                    Change(src_ip, previous, None, block.category, block.alert_id, None, "expired")
                )
                continue
            expires = now + self.expire
            lower = replace(
                block, step=block.step - 1, step_since=now, expires=expires, pushed=expires
            )
            self.blocks[src_ip] = lower
            changes.append(self._change(lower, previous, "relaxed"))
        return changes

    def lift(self, src_ip: str) -> Change | None:
        block = self.blocks.pop(src_ip, None)
        if block is None:
            return None
        previous = self.steps[block.step]
        return Change(src_ip, previous, None, block.category, block.alert_id, None, "lifted")

    def step_of(self, src_ip: str) -> str | None:
        block = self.blocks.peek(src_ip)
        return self.steps[block.step] if block is not None else None

    def _change(self, block: Block, previous: str | None, reason: str) -> Change:
        return Change(
            block.src_ip,
            previous,
            self.steps[block.step],
            block.category,
            block.alert_id,
            block.expires,
            reason,
        )
