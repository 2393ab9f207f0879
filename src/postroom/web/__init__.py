"""postroom's HTTP side: the tenant API, the operator API and console, health and metrics."""

from postroom.web.app import create_app

__all__ = ["create_app"]
