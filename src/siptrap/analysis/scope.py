"""One message's scope: what the analysis works out about a message once and shares
between everything that reads it while the message is being analysed (its rules, its
correlation windows, its fingerprint): the values of its fields, its defects, the tools
the catalogue names for it, what `Check_Fingerprint()` returns in each context, and the
variables its rules start with in each context.

The engine makes one per message and passes it down; it is dropped with the message, so
nothing here needs a bound or outlives the message it describes. What pays to remember
across messages lives in the engine's one bounded memo instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .fields import Field, Message, field_values
from .fingerprints import Match
from .outcome import Source
from .variables import MessageVariables


class MessageScope:
    """What one message's analysis shares. Read-only for its readers: the values it
    hands out are shared, do not change them."""

    __slots__ = (
        "_defects",
        "_identify",
        "_matches",
        "_values",
        "_variables",
        "facts",
        "fingerprints",
        "msg",
        "source",
    )

    def __init__(
        self,
        msg: Message,
        source: Source,
        facts: Mapping[str, str] | None,
        identify: Callable[[Message], list[Match]],
        matches: list[Match] | None = None,
    ) -> None:
        self.msg = msg
        self.source = source
        self.facts = facts  # the variables the engine worked out (FACT_VARIABLES)
        self.fingerprints: dict[str, str] = {}  # Check_Fingerprint() by context
        self._identify = identify
        self._matches = matches
        self._values: dict[Field, list[str]] = {}
        self._variables: dict[str, MessageVariables] = {}
        self._defects: frozenset[str] | None = None

    def values(self, field: Field) -> list[str]:
        """`fields.field_values(field, msg)`, worked out once per field (every spelling
        of one field is the same Field, and shares the entry)."""
        found = self._values.get(field)
        if found is None:
            found = self._values[field] = field_values(field, self.msg)
        return found

    @property
    def defects(self) -> frozenset[str]:
        if self._defects is None:
            self._defects = frozenset(self.msg.defect_names)
        return self._defects

    def matches(self) -> list[Match]:
        """The tools the catalogue names for the message, most likely first."""
        if self._matches is None:
            self._matches = self._identify(self.msg)
        return self._matches

    def variables(self, context: str) -> MessageVariables:
        """The variables the message's rules start with in `context` (upper case)."""
        found = self._variables.get(context)
        if found is None:
            found = MessageVariables(self.msg, self.source, context, self.facts)
            self._variables[context] = found
        return found
