"""Apply a SCIM PATCH request to a rendered resource, as FusionAuth does.

FusionAuth turns the operations into JSON Patch applied to the SCIM view the
response lambda produced; the result then goes through the request lambda
(fusionauth-scim.md §4, "Net effect"). The engine here is scim2-models'
:class:`~scim2_models.PatchOp`, with FusionAuth's differences: op names in any
case, an operation whose value filter matches nothing is dropped silently, and
Entra's ``remove`` with a ``value`` list removes the listed members.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    EnterpriseUser,
    Group,
    NoTargetException,
    PatchOp,
    SCIMException,
    User,
)

from .store import BadRequestError

__all__ = ["PATCH_URN", "apply_patch"]

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

_MODELS: dict[str, Any] = {
    "User": User[EnterpriseUser],
    "EnterpriseUser": User[EnterpriseUser],
    "Group": Group,
}


def _invalid(code: str, message: str) -> BadRequestError:
    return BadRequestError(
        "Request failed, see errors for additional details.",
        general_errors=[{"code": code, "message": message}],
        field_errors={},
    )


def _check_schemas(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise _invalid("[invalid]", "Your JSON was invalid")
    schemas = body.get("schemas")
    if not schemas:
        raise BadRequestError(
            "Request failed, see errors for additional details.",
            field_errors={
                "schemas": [
                    {
                        "code": "[missing]schemas",
                        "message": "You must specify the [schemas] property.",
                    }
                ]
            },
        )
    if schemas != [PATCH_URN]:
        raise BadRequestError(
            "Request failed, see errors for additional details.",
            field_errors={
                "schemas": [
                    {
                        "code": "[invalid]schemas",
                        "message": f"The [schemas] property must be [{PATCH_URN}].",
                    }
                ]
            },
        )
    operations = body.get("Operations")
    if not isinstance(operations, list) or not all(
        isinstance(op, dict) for op in operations
    ):
        raise _invalid("[invalid]patch", "Invalid SCIM patch request.")
    return operations


def _split_valued_remove(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn Entra's remove-with-value into one filtered remove per listed value."""
    op = str(operation.get("op", "")).lower()
    path, value = operation.get("path"), operation.get("value")
    if op != "remove" or not path or "[" in str(path) or value is None:
        return [operation]
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) and "value" in item for item in items):
        return [operation]
    return [
        {"op": "remove", "path": f"{path}[value eq {json.dumps(item['value'])}]"}
        for item in items
    ]


def apply_patch(resource: str, current: dict[str, Any], body: Any) -> dict[str, Any]:
    """Return the SCIM JSON of ``current`` after the PATCH request ``body``.

    Parameters
    ----------
    resource
        ``"User"``, ``"EnterpriseUser"`` or ``"Group"``.
    current
        The resource as the response lambda renders it.
    body
        The PatchOp request.

    Raises
    ------
    BadRequestError
        ``[missing]schemas``, ``[invalid]schemas`` or ``[invalid]patch``.

    Examples
    --------
    >>> body = {"schemas": [PATCH_URN],
    ...         "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    >>> apply_patch("User", {"userName": "bjensen", "active": True}, body)["active"]
    False
    """
    operations = _check_schemas(body)
    model = _MODELS[resource]
    doc = {k: v for k, v in current.items() if k not in ("meta", "id")}
    try:
        target = model.model_validate(doc)
    except ValidationError as exc:
        raise _invalid("[invalid]patch", "Invalid SCIM patch request.") from exc

    split = [part for op in operations for part in _split_valued_remove(op)]
    for operation in split:
        try:
            patch = PatchOp[model].model_validate(
                {"schemas": [PATCH_URN], "Operations": [operation]},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
        except ValidationError as exc:
            raise _invalid("[invalid]patch", "Invalid SCIM patch request.") from exc
        try:
            patch.patch(target)
        except NoTargetException:
            # FusionAuth resolves a value-filter path against the resource and
            # drops the operation when nothing matches (no noTarget error).
            if "[" not in str(operation.get("path", "")):
                raise _invalid(
                    "[invalid]patch", "Invalid SCIM patch request."
                ) from None
        except (SCIMException, ValidationError, ValueError) as exc:
            raise _invalid("[invalid]patch", "Invalid SCIM patch request.") from exc

    patched = target.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    if "externalId" in current and "externalId" not in patched:
        patched["externalId"] = None
    return patched
