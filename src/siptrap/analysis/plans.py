"""Message plans: what a request adds to its message alert, from its facts (the message
decision tree reads nothing else) and its rules' outcome: the categories, the main one,
the tool, the severity, the conclusions and the rules that fired."""

from __future__ import annotations

from .alerts import SEVERITY_ORDER, MessagePlan, main_category
from .decision import message_decision
from .evaluate import Outcome
from .facts import Facts
from .rules import RuleSet

TOOL_PREFIX = "Tool identified as: "


class PlanMaker:
    """Works out message plans with a rule set's categories and severities."""

    def __init__(self, rules: RuleSet) -> None:
        self._rule_by_name = {r.name: r for r in rules}

    def plan(self, facts: Facts, outcome: Outcome, tool: str | None) -> MessagePlan | None:
        """What a request other than a watched INVITE adds to its message alert (None:
        nothing to report): a function of the facts (the message decision reads nothing
        else), the rules' outcome and the tool."""
        decision = message_decision(facts)
        categories = list(decision.categories) + self.categories(outcome.fired)
        if not categories:
            return None
        conclusions = merge_conclusions(list(decision.conclusions) + list(outcome.conclusions))
        return self.make(facts, tool, categories, conclusions, outcome.fired)

    def make(
        self,
        facts: Facts,
        tool: str | None,
        categories: list[str],
        conclusions: list[str],
        fired: tuple[str, ...] | list[str],
    ) -> MessagePlan:
        by_name = self._rule_by_name
        severities = [by_name[n].severity for n in fired if n in by_name]
        return MessagePlan(
            category=main_category(categories),
            categories=tuple(categories),
            tool=tool,
            severity=max((s for s in severities if s), key=severity_rank, default=""),
            conclusions=tuple(conclusions),
            rules=tuple(fired),
            evidence=facts.tool.evidence if facts.tool is not None else (),
        )

    def categories(self, fired: tuple[str, ...] | list[str]) -> list[str]:
        """The categories of the rules that fired, in order, once each."""
        out: list[str] = []
        for name in fired:
            rule = self._rule_by_name.get(name)
            if rule is not None and rule.category and rule.category not in out:
                out.append(rule.category)
        return out


def severity_rank(name: str) -> int:
    return SEVERITY_ORDER.get(name, 0)


def merge_conclusions(items: list[str]) -> list[str]:
    """Dedupe; a rule's "Tool identified as: FAMILY" gives way to the member's name."""
    out = list(dict.fromkeys(items))
    cut = len(TOOL_PREFIX)
    named = [c[cut:] for c in out if c.startswith(TOOL_PREFIX)]
    return [
        c
        for c in out
        if not (
            c.startswith(TOOL_PREFIX)
            and any(n != c[cut:] and n.startswith(c[cut:] + " ") for n in named)
        )
    ]
