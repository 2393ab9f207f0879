"""One tenant's directory as rules see it (``rules.directory.Directory``): active staff, teams, templates.

Rules are pure and never open a session; this answers their questions from
storage and the outbound templates, for the pipeline, the CLI and the API.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from postroom.app import App
from postroom.outbound import compose
from postroom.storage import staff


class StaffDirectory:
    """``rules.directory.Directory`` over one session."""

    def __init__(self, app: App, session: Session, tenant: str) -> None:
        self.app = app
        self.session = session
        self.tenant = tenant

    def has_user(self, email: str) -> bool:
        user = staff.user_by_email(self.session, self.tenant, email)
        return user is not None and user.active

    def has_team(self, name: str) -> bool:
        return staff.team_by_name(self.session, self.tenant, name) is not None

    def has_template(self, name: str) -> bool:
        return compose.renderer_for(self.app).has_template(self.tenant, name)
