"""What a delete on one side does to the paired record on the other: the settings and the decision.

The delete policies of docs/architecture.md §4, apart from the create rules in ``policies``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from target_mktdyn_merge.core.vocabulary import Entity, Side

if TYPE_CHECKING:
    from target_mktdyn_merge.core.policies import SyncPolicy

DeletePolicy = Literal["ignore", "flag", "delete"]
"""What a delete on one side does to the paired record on the other."""


DeleteActivity = Literal["unlinked", "flagged", "deleted"]
"""The activity-log action of a delete decision."""


DELETE_POLICY_VALUES: frozenset[str] = frozenset(get_args(DeletePolicy))


RECORD_WORDS: Mapping[Side, str] = {"marketo": "Marketo person", "dynamics": "Dynamics lead or contact"}
"""A record of each side, in words."""


@dataclass(frozen=True)
class DeleteSetting:
    """The meaning of one delete setting, the one source of its behaviour and of its description.

    ``decide_delete`` picks the setting by the side where the delete happened; the settings schema, meltano.yml,
    docs/ and ``--about`` take their titles and descriptions from here, so they cannot describe the other
    direction.

    Attributes:
        name: The setting (``delete_from_dynamics``: delete *from Dynamics*, the side acted on).
        deleted: The side whose delete the setting handles.
        acted_on: The side the setting acts on (the deleted record's pair).
        flag_setting: The setting naming the field set to true on ``acted_on`` by ``flag``.
    """

    name: str
    deleted: Side
    acted_on: Side
    flag_setting: str

    @property
    def title(self) -> str:
        """The setting's label."""
        return f"When a {RECORD_WORDS[self.deleted]} is deleted"

    @property
    def description(self) -> str:
        """What each choice does, naming the side deleted and the side acted on."""
        acted_on = RECORD_WORDS[self.acted_on]
        return (
            f"When a {RECORD_WORDS[self.deleted]} is deleted, what happens to its paired {acted_on}: ignore "
            f"(left as it is), flag (the {acted_on}'s {self.flag_setting} field is set to true) or delete "
            "(it is deleted too). The pair is always unlinked."
        )

    @property
    def flag_description(self) -> str:
        """The description of ``flag_setting``."""
        kind = "Marketo boolean field" if self.acted_on == "marketo" else "Dynamics two-option column"
        return (
            f"{kind} set to true on a {RECORD_WORDS[self.acted_on]} whose paired {RECORD_WORDS[self.deleted]} "
            f"was deleted, when {self.name} is flag."
        )


#: The delete settings, by the side whose delete each handles.
DELETE_SETTINGS: Mapping[Side, DeleteSetting] = {
    "marketo": DeleteSetting("delete_from_dynamics", "marketo", "dynamics", "delete_flag_field_dynamics"),
    "dynamics": DeleteSetting("delete_from_marketo", "dynamics", "marketo", "delete_flag_field_marketo"),
}


@dataclass(frozen=True)
class DeleteDecision:
    """What a delete on one side does.

    Attributes:
        action: ``ignore`` (only unlink), ``flag`` (set the flag field on the other side) or ``delete``.
        deleted_side: Where the delete happened.
        target_side: The side acted on.
        target_id: The paired record on ``target_side``.
        target_entity: The Dynamics entity when the target is Dynamics.
        flag_payload: The update to send for ``flag`` (``{field: True}``), else empty.
        unlink: Always True: a pair with a deleted side is never kept.
        activity: The activity-log action.
        reason: Why, in words.
    """

    action: DeletePolicy
    deleted_side: Side
    target_side: Side
    target_id: str
    reason: str
    activity: DeleteActivity
    target_entity: Entity | None = None
    flag_payload: Mapping[str, Any] = field(default_factory=dict)
    unlink: bool = True


def decide_delete(
    deleted_side: Side,
    target_id: str,
    policy: SyncPolicy,
    *,
    dynamics_entity: Entity | None = None,
    target_exists: bool = True,
) -> DeleteDecision:
    """What a staged delete does to the paired record on the other side.

    Args:
        deleted_side: ``marketo`` (a person was deleted) or ``dynamics`` (a lead/contact was deleted).
        target_id: The paired record on the other side.
        policy: The settings.
        dynamics_entity: The pair's Dynamics entity (the deleted row's, or the target's).
        target_exists: False when the paired record is gone too: then there is nothing to act on.
    """
    spec = DELETE_SETTINGS[deleted_side]
    target_side = spec.acted_on
    setting_name = spec.name
    setting: DeletePolicy = getattr(policy, spec.name)
    flag_field: str = getattr(policy, spec.flag_setting)
    source = "Marketo person" if deleted_side == "marketo" else f"Dynamics {dynamics_entity or 'row'}"
    entity = dynamics_entity if target_side == "dynamics" else None

    def decided(action: DeletePolicy, activity: DeleteActivity, reason: str) -> DeleteDecision:
        return DeleteDecision(
            action=action,
            deleted_side=deleted_side,
            target_side=target_side,
            target_id=target_id,
            reason=reason,
            activity=activity,
            target_entity=entity,
            flag_payload={flag_field: True} if action == "flag" else {},
        )

    if not target_exists:
        return decided("ignore", "unlinked", "both sides are deleted: unlink only")
    if setting == "flag":
        return decided(
            "flag", "flagged", f"{setting_name}=flag: the {source} was deleted; set {flag_field}=true and unlink"
        )
    if setting == "delete":
        return decided(
            "delete", "deleted", f"{setting_name}=delete: the {source} was deleted; delete its pair and unlink"
        )
    return decided("ignore", "unlinked", f"{setting_name}=ignore: the {source} was deleted; unlink only")
