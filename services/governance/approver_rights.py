"""The current rights of the people whose approvals are counted (issue 10: "the approver's current
rights").

The acting reviewer's roles come from the identity provider at the write (userinfo). The other
approvers are not signed in: their rights come from the directory (``auth.directory``, SCIM) when
one is configured for their issuer, asked once per person per decision, else from the newest roles
the ledger has seen for them (an approver who acted since without the right loses it; one removed
from the group who has not acted since still counts: that is the limit without a directory).

A directory that does not answer is noted, never guessed: a page shows the ledger's roles and says
so; a decision whose outcome depends on the answer is refused (``require_answer``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from services.auth.directory import DecisionDirectory, Directory, DirectoryUnavailable, directory_of
from services.governance.context import GovernanceContext
from services.governance.ledger_rows import Decision

DIRECTORY, LEDGER = "directory", "ledger"


@dataclass(frozen=True)
class Rights:
    roles: frozenset[str]
    source: str  # DIRECTORY or LEDGER
    absent: str | None = None  # the directory gives them no rights at all, and why ("is not in the directory")


def latest_roles(everything: Sequence[Decision]) -> dict[str, frozenset[str]]:
    """The newest roles the ledger has seen per actor (an actor seen since without a right loses it)."""
    latest: dict[str, frozenset[str]] = {}
    for d in sorted(everything, key=lambda d: d.seq):
        latest[d.actor_key] = frozenset(d.actor_roles)
    return latest


def directory_for(ctx: GovernanceContext) -> Directory | None:
    """The context's directory, else the one tower.yaml configures (None: no directory)."""
    return ctx.directory if ctx.directory is not None else directory_of(ctx.settings)


def for_decision(ctx: GovernanceContext) -> GovernanceContext:
    """``ctx`` with a directory that remembers its answers for this one decision: every count in it
    (the request read first, the locked write, the outcome) sees the same answer, one call per person."""
    directory = directory_for(ctx)
    if directory is None or isinstance(directory, DecisionDirectory):
        return ctx
    return dataclasses.replace(ctx, directory=DecisionDirectory(directory))


class ApproverRights:
    """Rights of the approvers of the rows read together (one decision, or one page draw)."""

    def __init__(self, directory: Directory | None, everything: Sequence[Decision]) -> None:
        self.directory = directory if directory is None or isinstance(directory, DecisionDirectory) \
            else DecisionDirectory(directory)
        self._ledger = latest_roles(everything)
        self.unreachable: str | None = None  # the directory's failure: the ledger's roles were used instead

    def of(self, approval: Decision) -> Rights:
        seen = self._ledger.get(approval.actor_key, frozenset(approval.actor_roles))
        if self.directory is None or not self.directory.covers(approval.actor_issuer):
            return Rights(seen, LEDGER)
        if self.unreachable is not None:  # one timeout per draw or decision, not one per approver
            return Rights(seen, LEDGER)
        try:
            answer = self.directory.current_rights(approval.actor_issuer, approval.actor_subject,
                                                   approval.actor_email)
        except DirectoryUnavailable as exc:
            self.unreachable = exc.message
            return Rights(seen, LEDGER)
        return Rights(answer.roles, DIRECTORY, answer.absent)

    def require_answer(self) -> None:
        """DirectoryUnavailable if an approver's rights could not be asked of the directory."""
        if self.unreachable is not None:
            raise DirectoryUnavailable(
                f"The approvers' current rights could not be checked with the directory: {self.unreachable}",
                "Nothing was recorded; approvals are not counted on possibly revoked rights. Try again "
                "once the directory answers.")

    @property
    def source(self) -> str:
        """Where the rights came from, in words (what the review page says)."""
        if self.directory is None:
            return "the newest roles the ledger has seen for each approver (no directory is configured)"
        if self.unreachable is not None:
            return (f"the newest roles the ledger has seen: {self.directory.description} did not answer "
                    f"({self.unreachable})")
        return f"{self.directory.description}, asked now (approvers of other issuers: the ledger's newest roles)"
