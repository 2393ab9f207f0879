"""The one reader of ``Authentication-Results`` header values (RFC 8601), for the gateway and the rules alike.

Only parsing lives here: which stamps to believe (the topmost one from a
trusted server for the gateway, every trusted one for rules) stays with
each caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import authres


@dataclass(frozen=True)
class Verdict:
    """One method's result, lower-cased, with its properties keyed ``type.name`` (``header.d``, ``smtp.mailfrom``)."""

    method: str
    result: str
    properties: Mapping[str, str]


@dataclass(frozen=True)
class Stamp:
    """One header: the server that wrote it (lower-cased) and its verdicts."""

    authserv_id: str
    verdicts: tuple[Verdict, ...]


def parse(value: str) -> Stamp:
    """One header value; raises whatever authres raises on malformed input (several unrelated types)."""
    header = authres.AuthenticationResultsHeader.parse_value(" ".join(value.split()))
    verdicts = tuple(
        Verdict(result.method.lower(), str(result.result).lower(),
                {f"{p.type}.{p.name}".lower(): p.value for p in getattr(result, "properties", [])})
        for result in header.results if result.method and result.result
    )
    return Stamp((header.authserv_id or "").lower(), verdicts)
