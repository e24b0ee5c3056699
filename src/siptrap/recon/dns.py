"""DNS: forward and reverse lookups with dnspython's asyncio resolver.

Queries go only to the configured resolvers (or the system's); a name is looked up only
after `guard.valid_hostname` accepted it. A name that does not resolve is evidence of
spoofing (the Artemisa paper's Figure 6 analysis)."""

from __future__ import annotations

from typing import Any

MAX_ANSWERS = 16


class Lookups:
    """The resolver is made (and dnspython imported) at the first lookup, not at start."""

    def __init__(self, resolvers: tuple[str, ...], timeout: float) -> None:
        self.resolvers = resolvers
        self.timeout = timeout
        self._resolver: Any = None

    @property
    def resolver(self) -> Any:
        if self._resolver is None:
            import dns.asyncresolver

            resolver = dns.asyncresolver.Resolver(configure=not self.resolvers)
            if self.resolvers:
                resolver.nameservers = [r.strip() for r in self.resolvers]
            resolver.timeout = self.timeout
            resolver.lifetime = self.timeout
            self._resolver = resolver
        return self._resolver

    async def forward(self, name: str) -> tuple[str, dict[str, Any]]:
        """(outcome, detail): the name's A and AAAA addresses, or why there are none."""
        import dns.exception
        import dns.resolver

        addresses: list[str] = []
        errors: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(name, rdtype, search=False)
            except dns.resolver.NXDOMAIN:
                if addresses:  # an A answer, then NXDOMAIN for AAAA: keep the answer
                    break
                return "failed", {"error": "NXDOMAIN: the name does not exist"}
            except (dns.resolver.NoAnswer, dns.resolver.NoNameservers) as exc:
                errors.append(type(exc).__name__)
                continue
            except dns.exception.Timeout:
                errors.append("Timeout")
                continue
            addresses += [rr.to_text() for rr in answer][:MAX_ANSWERS]
        if addresses:
            return "ok", {"addresses": addresses}
        if errors and all(e == "Timeout" for e in errors):
            return "timeout", {"error": "the resolvers did not answer"}
        return "failed", {"error": "no address records"}

    async def reverse(self, address: str) -> tuple[str, dict[str, Any]]:
        """(outcome, detail): the address's PTR names."""
        import dns.exception
        import dns.resolver
        import dns.reversename

        try:
            answer = await self.resolver.resolve(
                dns.reversename.from_address(address), "PTR", search=False
            )
        except dns.resolver.NXDOMAIN:
            return "failed", {"error": "NXDOMAIN: no reverse name"}
        except (dns.resolver.NoAnswer, dns.resolver.NoNameservers) as exc:
            return "failed", {"error": type(exc).__name__}
        except dns.exception.Timeout:
            return "timeout", {"error": "the resolvers did not answer"}
        names = [rr.to_text().rstrip(".") for rr in answer][:MAX_ANSWERS]
        return "ok", {"names": names}
