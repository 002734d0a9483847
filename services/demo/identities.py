"""The demo's people: one or more per role, with the ID-token claims the local OIDC provider issues.

Groups are mapped to tower roles by tower.yaml's ``auth.roles``; owners match the ``owner`` tags
the seeder puts on the registered models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoUser:
    sub: str
    name: str
    groups: tuple[str, ...]
    note: str

    @property
    def email(self) -> str:
        return f"{self.sub}@demo.tower.invalid"

    def claims(self) -> dict[str, Any]:
        return {"sub": self.sub, "name": self.name, "email": self.email, "groups": list(self.groups)}


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", "Alice Martin", ("tower-model-owners",), "owner of credit-risk"),
    DemoUser("bob", "Bob Osei", ("tower-model-owners", "tower-data-scientists"), "owner of loan-approval"),
    DemoUser("carol", "Carol Nguyen", ("tower-model-owners",), "owner of fraud-detection"),
    DemoUser("dave", "Dave Kowalski", ("tower-model-owners",), "owner of demand-forecast"),
    DemoUser("rita", "Rita Alvarez", ("tower-reviewers",), "reviewer"),
    DemoUser("ravi", "Ravi Shah", ("tower-reviewers",), "second reviewer"),
    DemoUser("sam", "Sam Lee", ("tower-data-scientists",), "data scientist"),
    DemoUser("vera", "Vera Novak", ("tower-viewers",), "manager (viewer)"),
    DemoUser("adam", "Adam Berg", ("tower-admins",), "administrator"),
)
