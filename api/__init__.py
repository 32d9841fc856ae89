"""The HTTP API: `create_app(settings, store, services)` builds the Flask app."""

from api.app import create_app
from api.services import Services

__all__ = ["create_app", "Services"]
