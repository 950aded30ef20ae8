"""Settings of the sandbox: every FusionAuth behaviour that is not settled."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .faults import FaultPlan

__all__ = ["SandboxConfig", "utc_now"]


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class SandboxConfig:
    """Choose how the sandbox answers where FusionAuth's behaviour is unconfirmed.

    The defaults follow the stand-in column of the FusionAuth reference's table
    of unknowns, except ``overflow`` (400 here, so that a client that pages past
    the 10,000 window fails loudly).

    Parameters
    ----------
    latency
        Seconds slept before answering each SCIM request (not the token grant).
    window
        The result window: ``startIndex + count - 1`` above it overflows.
    overflow
        What an overflowing list answers: ``"400"``, ``"500"``, ``"503"``,
        ``"empty"`` (a page without resources) or ``"truncate"`` (the resources
        up to the window).
    cap_total
        Report ``totalResults`` as at most ``window``.
    empty_resources
        ``"absent"`` leaves ``Resources`` out of an empty list, ``"empty"``
        sends ``[]``.
    count_above_max
        What a ``count`` above 500 does: ``"honour"``, ``"cap"`` or ``"reject"``.
    token_ttl
        Lifetime in seconds of the access tokens the token endpoint mints.
    aud_as_array
        Mint ``aud`` as a one-element array (current tokens) or a string.
    username_eq_matches_email
        ``userName eq "x"`` also finds the user whose email is x.
    empty_error_bodies
        Answer 401, 404 and 500 without a body.
    lambda_timeout
        Seconds a lambda may run before it is stopped.
    clock
        Callable returning the current aware UTC datetime.
    id_seed
        Seed of the random generator of ids, for deterministic builds; None
        uses random UUIDs.
    max_body_bytes
        Largest request body accepted, in bytes (1 MiB). A larger body answers
        413 Content Too Large, as FusionAuth's HTTP server (java-http) does
        above its configured maximum request size; nothing is stored.
    max_field_length
        Most characters in ``user.username`` and ``user.email`` (191, the
        VARCHAR(191) of FusionAuth's MySQL-compatible schema: utf8mb4 index
        limit). Longer values, and values holding a NUL character, answer 400
        with ``fieldErrors`` naming the field.
    faults
        A `scimtools.sandbox.faults.FaultPlan` of faults to inject (latency,
        429, 5xx, lost answers, cut connections, short-lived tokens); None
        for none.

    Examples
    --------
    >>> SandboxConfig(overflow="truncate").window
    10000
    """

    latency: float = 0.0
    window: int = 10_000
    overflow: Literal["400", "500", "503", "empty", "truncate"] = "400"
    cap_total: bool = False
    empty_resources: Literal["absent", "empty"] = "absent"
    count_above_max: Literal["honour", "cap", "reject"] = "honour"
    token_ttl: int = 3600
    aud_as_array: bool = True
    username_eq_matches_email: bool = True
    empty_error_bodies: bool = False
    lambda_timeout: float = 1.0
    clock: Callable[[], dt.datetime] = field(default=utc_now, repr=False)
    id_seed: int | None = None
    max_body_bytes: int = 1 << 20
    max_field_length: int = 191
    faults: FaultPlan | None = None

    def __post_init__(self) -> None:
        if self.overflow not in ("400", "500", "503", "empty", "truncate"):
            raise ValueError(
                f"overflow must be 400, 500, 503, empty or truncate, not "
                f"{self.overflow!r}"
            )
        if self.empty_resources not in ("absent", "empty"):
            raise ValueError(
                f"empty_resources must be 'absent' or 'empty', not "
                f"{self.empty_resources!r}"
            )
        for name in ("max_body_bytes", "max_field_length"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be a positive integer, not {getattr(self, name)!r}"
                )
        if self.count_above_max not in ("honour", "cap", "reject"):
            raise ValueError(
                f"count_above_max must be honour, cap or reject, not "
                f"{self.count_above_max!r}"
            )
