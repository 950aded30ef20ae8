"""Compare what a SCIM server says about itself with what it does.

RFC 7644 §4 gives every server three self-descriptions: ServiceProviderConfig,
ResourceTypes and Schemas. FusionAuth's are known to be wrong where it matters to
a client: filter and PATCH are reported unsupported although both work, and
/EnterpriseUsers is served without being listed. `check_discovery` reads the
claims and probes the server with read-only requests, so a notebook can show where
the two differ and the client can rely on what it observed.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from scimtools.client import SCIMClient
from scimtools.errors import SCIMServerError

logger = logging.getLogger(__name__)

__all__ = ["check_discovery"]

_COLUMNS = ["capability", "claimed", "observed", "agrees", "how"]


def check_discovery(client: SCIMClient) -> pd.DataFrame:
    """Return the server's claims next to what read-only probes observe.

    Reads ServiceProviderConfig and ResourceTypes, then probes: a filter that
    can match nothing (`SCIMClient.probe_filter`), a one-item list of
    /EnterpriseUsers, and a request at the last index of the result window.
    PATCH is not probed, since that would change data: its row says so. The
    window row is True when a page past the window is refused or empty although
    ``totalResults`` says more, and None when the collection fits inside it. The
    observations are recorded in ``client.capabilities``.

    Parameters
    ----------
    client : SCIMClient
        The connection; its token needs the discovery permissions
        (``scim:service-provider-config:read``, ``scim:resource-types:read``).

    Returns
    -------
    pandas.DataFrame
        One row per capability: ``capability``, ``claimed``, ``observed``,
        ``agrees`` (bool, or None where nothing was observed) and ``how``.

    Examples
    --------
    >>> from scimtools.discovery import _row
    >>> _row("filter", False, True, "probe")["agrees"]
    False
    """
    config = client.service_provider_config()
    resource_types = client.resource_types()
    listed = sorted(str(rt.get("endpoint", "")).strip("/") for rt in resource_types)
    rows = []

    filter_claim = bool((config.get("filter") or {}).get("supported"))
    filter_works = client.probe_filter("Users")
    rows.append(
        _row(
            "filter",
            filter_claim,
            filter_works,
            "listed Users with a userName that matches nobody",
        )
    )

    patch_claim = bool((config.get("patch") or {}).get("supported"))
    rows.append(
        _row(
            "patch",
            patch_claim,
            client.capabilities.patch,
            "not probed (it would change data); learned on the first PATCH",
        )
    )

    enterprise_served = _serves(client, "EnterpriseUsers")
    rows.append(
        _row(
            "EnterpriseUsers endpoint",
            "EnterpriseUsers" in listed,
            enterprise_served,
            "listed /EnterpriseUsers with count=1",
        )
    )

    max_results = (config.get("filter") or {}).get("maxResults")
    rows.append(
        _row(
            "filter.maxResults",
            max_results,
            None,
            "advertised only; scimtools pages with count=100",
        )
    )

    window = client.capabilities.window
    if window is not None:
        rows.append(
            _row(
                f"result window of {window:,}",
                None,
                _window_enforced(client, window),
                f"listed Users at startIndex {window + 1:,} with count=1",
            )
        )

    return pd.DataFrame(rows, columns=_COLUMNS)


def _row(capability: str, claimed: Any, observed: Any, how: str) -> dict[str, Any]:
    agrees = None if claimed is None or observed is None else claimed == observed
    return {
        "capability": capability,
        "claimed": claimed,
        "observed": observed,
        "agrees": agrees,
        "how": how,
    }


def _serves(client: SCIMClient, endpoint: str) -> bool:
    try:
        client.list_page(endpoint, count=1)
    except SCIMServerError as exc:
        logger.debug("%s answered %s", endpoint, exc.status)
        return False
    return True


def _window_enforced(client: SCIMClient, window: int) -> bool | None:
    """Tell whether the server refuses or empties a page past the window.

    None when the collection is not larger than the window, so nothing shows.
    """
    total = client.list_page("Users", count=1).total_results
    if total is None or total <= window:
        return None
    try:
        response = client.request(
            "GET", "Users", params={"startIndex": window + 1, "count": 1}
        )
    except SCIMServerError as exc:
        logger.debug("a list past the window answered %s", exc.status)
        return True
    body = response.json() if response.content else {}
    return not (body.get("Resources") if isinstance(body, dict) else None)
