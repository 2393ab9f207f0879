"""Tenant rules over HTTP: validate, test against a message, upload; the same checks as ``postroom rules``.

Rules are compiled in the serving process, which also runs the SMTP gateway:
the loader bounds each compilation (``rules.bounds``) and a small number of
slots bounds how many run at once, so a flood of requests waits or gets 503
instead of multiplying that cost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field

from postroom.app import App
from postroom.model import Envelope, to_jsonable
from postroom.parsing import parse
from postroom.rules import RuleInput, RulesError, Ruleset, directory, evaluate, guard_auto_reply, parse_ruleset
from postroom.rules.loader import RuleBook
from postroom.staff_directory import StaffDirectory
from postroom.storage.apikeys import Principal
from postroom.web.auth import tenant_principal
from postroom.web.deps import get_app
from postroom.web.errors import ERROR_RESPONSES
from postroom.web.limits import takes_upload

router = APIRouter(prefix="/api/v1/rules", tags=["rules"],
                   responses={**ERROR_RESPONSES, 503: ERROR_RESPONSES[400] | {"description": "Busy, retry later"}})

YamlBody = Body(media_type="application/yaml", description="The tenant's rules as YAML (at most 256 KiB)")
SLOTS = 2
SLOT_WAIT_SECONDS = 10.0
_slots = threading.BoundedSemaphore(SLOTS)


@contextmanager
def _slot() -> Iterator[None]:
    if not _slots.acquire(timeout=SLOT_WAIT_SECONDS):
        raise HTTPException(503, "busy checking other rules files; retry in a few seconds",
                            headers={"Retry-After": "5"})
    try:
        yield
    finally:
        _slots.release()


class Validation(BaseModel):
    valid: bool
    rules: int = 0
    errors: list[str] = []


class RulesTest(BaseModel):
    rules: str = Field(description="YAML rule set (at most 256 KiB)")
    message: str = Field(max_length=5_000_000, description="The .eml to route, as text")
    is_reply: bool = False


def _compile(text: str) -> Ruleset:
    """parse_ruleset, with YAML reader errors (e.g. control characters) reported like any other problem."""
    try:
        return parse_ruleset(text, "rules.yaml")
    except yaml.YAMLError as exc:
        raise RulesError([f"rules.yaml: not readable as YAML: {exc}".replace("\n", " ")]) from exc


def _vetted(text: str, app: App, tenant: str) -> Ruleset:
    """The compiled rules, refused (RulesError) when they name a user, team or template the tenant lacks."""
    ruleset = _compile(text)
    with app.session() as session:
        missing = directory.problems(ruleset, StaffDirectory(app, session, tenant))
    if missing:
        raise RulesError(missing)
    return ruleset


def _validate(text: str, app: App, tenant: str) -> Validation:
    try:
        with _slot():
            ruleset = _vetted(text, app, tenant)
    except RulesError as exc:
        return Validation(valid=False, errors=exc.lines)
    return Validation(valid=True, rules=len(ruleset))


@router.post("/validate", response_model=Validation)
def validate(text: str = YamlBody, principal: Principal = Depends(tenant_principal),
             app: App = Depends(get_app)) -> Validation:
    """Check a rule set against the tenant; every problem comes back as ``file:line:col: message``."""
    return _validate(text, app, principal.tenant)


@router.post("/test", response_model=dict[str, Any])
@takes_upload
def test(request: RulesTest, principal: Principal = Depends(tenant_principal),
         app: App = Depends(get_app)) -> dict[str, Any]:
    """Route a message through a rule set and show, rule by rule, what matched and why."""
    with _slot():
        try:
            ruleset = _vetted(request.rules, app, principal.tenant)
        except RulesError as exc:
            return {"valid": False, "errors": exc.lines}
        parsed = parse(request.message.encode("utf-8", "surrogateescape"))
        envelope = Envelope(mail_from=parsed.sender.address if parsed.sender else "",
                            rcpt_tos=tuple(a.address for a in (*parsed.to, *parsed.cc)))
        inp = RuleInput.from_parsed(parsed, envelope, is_reply=request.is_reply,
                                    new_conversation=not request.is_reply)
        decision = guard_auto_reply(evaluate(inp, ruleset, explain=True), inp, lambda _address: False)
    return {"valid": True, **to_jsonable(decision)}


@router.put("", response_model=Validation)
def upload(text: str = YamlBody, principal: Principal = Depends(tenant_principal),
           app: App = Depends(get_app)) -> Validation:
    """Replace the tenant's rules, only if they validate (the pipeline reloads them on change)."""
    result = _validate(text, app, principal.tenant)
    if result.valid:
        path = RuleBook(app.settings.resolved_rules_dir).path_for(principal.tenant)
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".yaml.uploading")
        staged.write_text(text, encoding="utf-8")
        staged.replace(path)
    return result
