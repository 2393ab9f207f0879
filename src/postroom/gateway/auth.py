"""Sender authentication: what SPF, DKIM, DMARC and ARC said about a message, and staff-forward trust.

Results come from two places. DKIM is verified here with dkimpy (the DNS
lookup is a parameter, so tests use local keys and nothing leaves the host).
SPF, DMARC and ARC can only be judged by the MTA that talked to the sender, so
they are read from the topmost ``Authentication-Results`` header, and only when
its authserv-id is one we trust: anything lower down may have been written by
the sender. ``authenticate`` never raises; the result goes on every inbound row.

``assess_staff_forward`` is the one rule for mail to ``inbox@`` that claims to
be a staff forward: trusted only from a staff address, with no failing check
and at least one passing check aligned with the sender's domain (no
authentication at all is trivially forged, so it is not trust).
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import dkim

from postroom import authresults

log = logging.getLogger(__name__)

DnsLookup = Callable[..., bytes | None]
FAILING = frozenset({"fail", "softfail", "permerror"})
MAX_SIGNATURES = 5
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


@dataclass(frozen=True)
class AuthResults:
    """One message's authentication verdicts ("pass", "fail", "none", "temperror"...)."""

    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    arc: str = "none"
    spf_domain: str | None = None
    dkim_domains: tuple[str, ...] = ()
    authserv_id: str | None = None
    dkim_source: Literal["none", "local", "upstream"] = "none"
    errors: tuple[str, ...] = field(default=())

    def failing(self) -> tuple[str, ...]:
        """The checks that failed, e.g. ("dmarc=fail",)."""
        return tuple(f"{name}={value}" for name, value in
                     (("spf", self.spf), ("dkim", self.dkim), ("dmarc", self.dmarc)) if value in FAILING)

    def to_jsonable(self) -> dict:
        """The fields as a dict (what ``dataclasses.asdict`` returns: every value here is immutable, so the
        deep copy it makes per message was wasted)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_jsonable(cls, data: dict | None) -> AuthResults:
        """Rebuild from an inbound row's ``auth_results`` column (None: nothing was recorded)."""
        if not data:
            return cls()
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        for name in ("dkim_domains", "errors"):
            known[name] = tuple(known.get(name) or ())
        return cls(**known)


@dataclass(frozen=True)
class StaffForward:
    """Whether mail to inbox@ may be treated as a staff forward, and why."""

    verdict: Literal["trusted", "quarantine"]
    reason: str

    @property
    def trusted(self) -> bool:
        return self.verdict == "trusted"


def _domain(value: str | None) -> str | None:
    if not value:
        return None
    return value.rsplit("@", 1)[-1].strip().strip(".").lower() or None


def _upstream(headers: list[tuple[str, str]], trusted: frozenset[str]) -> AuthResults | None:
    """Results from the topmost Authentication-Results header, if a trusted server wrote it."""
    top = next((value for name, value in headers if name.lower() == "authentication-results"), None)
    if top is None:
        return None
    stamp = authresults.parse(top)
    if stamp.authserv_id not in trusted:
        return None
    found: dict[str, str] = {}
    spf_domain = None
    dkim_domains: list[str] = []
    for verdict in stamp.verdicts:
        method, value, props = verdict.method, verdict.result, verdict.properties
        if method == "dkim" and value == "pass":
            d = props.get("header.d") or _domain(props.get("header.i"))
            if d:
                dkim_domains.append(d.lower())
        if method == "spf":
            spf_domain = _domain(props.get("smtp.mailfrom")) or _domain(props.get("smtp.helo"))
        # One passing signature is enough for DKIM; keep the best verdict per method.
        if method not in found or value == "pass":
            found[method] = value
    return AuthResults(
        spf=found.get("spf", "none"), dkim=found.get("dkim", "none"), dmarc=found.get("dmarc", "none"),
        arc=found.get("arc", "none"), spf_domain=spf_domain, dkim_domains=tuple(dkim_domains),
        authserv_id=stamp.authserv_id, dkim_source="upstream" if "dkim" in found else "none",
    )


def _verify_dkim(raw: bytes, count: int, dnsfunc: DnsLookup) -> tuple[str, tuple[str, ...]]:
    """Verify up to MAX_SIGNATURES signatures; "pass" if any passes, with the passing d= domains."""
    checker = dkim.DKIM(raw, minkey=1024)
    passed: list[str] = []
    outcome = "fail"
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            ok = checker.verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DnsTimeoutError:
            outcome = "temperror"
            continue
        except dkim.DKIMException:
            ok = False
        if ok and checker.domain:
            passed.append(checker.domain.decode("ascii", "replace").lower())
    return ("pass" if passed else outcome), tuple(passed)


def authenticate(raw: bytes, *, trusted_authserv_ids: Iterable[str] = (),
                 dnsfunc: DnsLookup | None = None) -> AuthResults:
    """Every verdict we can stand behind for ``raw``; ``dnsfunc=None`` skips local DKIM verification."""
    errors: list[str] = []
    try:
        headers = [(k, str(v)) for k, v in _HEADERS.parsebytes(raw[:1_000_000]).items()]
    except Exception as exc:  # unreadable headers: nothing is authenticated
        return AuthResults(errors=(f"headers: {type(exc).__name__}",))
    results = AuthResults()
    try:
        results = _upstream(headers, frozenset(a.lower() for a in trusted_authserv_ids)) or results
    except Exception as exc:  # a malformed header from upstream must not cost the message
        errors.append(f"authentication-results: {type(exc).__name__}")
    signatures = sum(1 for name, _ in headers if name.lower() == "dkim-signature")
    if dnsfunc is not None and signatures:
        try:
            verdict, domains = _verify_dkim(raw, signatures, dnsfunc)
            results = _replace(results, dkim=verdict, dkim_domains=domains, dkim_source="local")
        except Exception as exc:
            errors.append(f"dkim: {type(exc).__name__}")
            results = _replace(results, dkim="temperror", dkim_source="local")
    return _replace(results, errors=tuple(errors)) if errors else results


def _replace(results: AuthResults, **changes: object) -> AuthResults:
    return AuthResults(**{**asdict(results), **changes})


def _aligned(domain: str, signer: str | None) -> bool:
    """Relaxed alignment: the signer is the sender's domain or a parent of it (never a sibling)."""
    return bool(signer) and (domain == signer or domain.endswith(f".{signer}"))


def system_dns(name: bytes, timeout: int = 5) -> bytes | None:
    """dkimpy's own resolver (dnspython), used in production."""
    return dkim.dnsplug.get_txt(name, timeout=timeout)


def assess_staff_forward(sender: str | None, staff_addresses: Iterable[str], results: AuthResults) -> StaffForward:
    """Trust mail to inbox@ as a staff forward, or quarantine it for review (with the reason)."""
    address = (sender or "").strip().strip("<>").lower()
    if not address or address not in {s.strip().lower() for s in staff_addresses}:
        return StaffForward("quarantine", "sender is not one of the tenant's staff addresses")
    failing = results.failing()
    if failing:
        return StaffForward("quarantine", f"authentication failed: {', '.join(failing)}")
    domain = _domain(address) or ""
    aligned = (results.dmarc == "pass"
               or (results.dkim == "pass" and any(_aligned(domain, d) for d in results.dkim_domains))
               or (results.spf == "pass" and _aligned(domain, results.spf_domain)))
    if not aligned:
        return StaffForward("quarantine", f"no passing SPF, DKIM or DMARC check for {domain}")
    return StaffForward("trusted", "staff address with passing, aligned authentication")
