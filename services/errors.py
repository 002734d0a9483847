"""The small family of errors services raise.

Each carries a message a user can act on and, where useful, a hint naming what to configure.
Pages show them with ``st.error``; nothing else of an exception reaches the browser.
"""

from __future__ import annotations


class TowerError(Exception):
    """Base of every error a page may show to a user."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ConfigError(TowerError):
    """The settings or tower.yaml are invalid."""


class RegistryUnavailable(TowerError):
    """The MLflow tracking server or its database cannot be reached."""


class WarehouseUnavailable(TowerError):
    """The prediction-log warehouse cannot be reached."""


class TowerStateUnavailable(TowerError):
    """The tower's own database (TOWER_DB_URL) cannot be reached."""


class Forbidden(TowerError):
    """The actor may not perform this action on this resource."""


class Conflict(TowerError):
    """The action collides with one already recorded (e.g. a decision made by someone else first)."""


class MappingError(TowerError):
    """A model's mapped table or column does not exist in the warehouse."""


class NotFound(TowerError):
    """A model, version or run named by the user does not exist."""


class InvalidInput(TowerError):
    """A request or decision is missing something it needs, or carries unusable input."""
