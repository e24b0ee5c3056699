"""`siptrap rules check FILE...` and `siptrap rules list`: rule files from the shell."""

from __future__ import annotations

import argparse
import sys

from ..analysis.rules import RuleError, builtin_rules_dir, load_rules, parse_rules


def cmd_rules_check(args: argparse.Namespace) -> int:
    """Check rule files: each on its own, then together. Exit 1 on the first error of each."""
    failed = False
    for name in args.files:
        try:
            load_rules([name])
        except RuleError as exc:
            print(f"{exc.file}:{exc.line}: {exc.reason}", file=sys.stderr)
            failed = True
    if failed:
        return 1
    try:
        rules = load_rules(args.files)
    except RuleError as exc:
        print(f"{exc.file}:{exc.line}: {exc.reason}", file=sys.stderr)
        return 1
    modes = f"; modes: {', '.join(m.name for m in rules.modes)}" if rules.modes else ""
    print(f"{len(rules)} rules OK in {len(args.files)} file(s){modes}")
    return 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    """Print the rules in force: the configured files, or the built-in ones."""
    from ..config import load_config
    from ..settings import ConfigError

    paths: tuple[str, ...] = ()
    if args.config:
        try:
            paths = tuple(load_config(args.config).analysis.rules)
        except ConfigError as exc:
            print(f"siptrap: configuration error: {exc}", file=sys.stderr)
            return 2
    try:
        rules = load_rules(paths or [builtin_rules_dir()])
    except RuleError as exc:
        print(f"{exc.file}:{exc.line}: {exc.reason}", file=sys.stderr)
        return 1
    where = ", ".join(paths) if paths else f"built-in ({builtin_rules_dir()})"
    print(f"# {len(rules)} rules in force from {where}")
    print(f"{'rule':<26} {'type':<30} {'context':<22} {'scope':<9} {'category':<14} where")
    for rule in rules:
        context = ",".join(rule.context)
        print(
            f"{rule.name:<26} {rule.type:<30} {context[:22]:<22} {rule.scope or '-':<9} "
            f"{rule.category or '-':<14} {rule.source}:{rule.line}"
        )
    for mode in rules.modes:  # type = Mode sections: [sensor] mode, `siptrap ctl mode`
        print(
            f"{mode.name:<26} {'Mode':<30} checks={','.join(mode.check_list)} "
            f"targets={','.join(mode.target_list)} {mode.source}:{mode.line}"
        )
    return 0


def add_rules_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules", help="check rule files, list the rules in force")
    rules_sub = p.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    p_check = rules_sub.add_parser("check", help="validate rule files (exit 1 with file:line)")
    p_check.add_argument("files", nargs="+", metavar="FILE", help="a rule file (Artemisa syntax)")
    p_check.set_defaults(func=cmd_rules_check)
    p_list = rules_sub.add_parser("list", help="the rules in force")
    p_list.add_argument("--config", metavar="FILE", help="TOML configuration ([analysis] rules)")
    p_list.set_defaults(func=cmd_rules_list)


__all__ = ["add_rules_parser", "cmd_rules_check", "cmd_rules_list", "parse_rules"]
