"""scim2-server's storage contract, run on the sandbox's SQLite storage.

The storage is set up with pass-through ("identity") lambdas, so that the
contract checks the storage and not the data loss of FusionAuth's default
lambdas. Skipped by the suite itself: the cursor tests (supports_cursors is
False: FusionAuth pages by index only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scim2_models import ScimProvider
from scim2_server.testing import ScimStorageContract
from scim2_server.utils import load_default_provider

from scimtools.sandbox import LambdaSet, SandboxConfig
from scimtools.sandbox.store import Store, Tenant, TenantStorage

_USER_REQUEST = """
function convert(user, options, scimUser) {
  var copy = JSON.parse(JSON.stringify(scimUser));
  delete copy.password;
  user.username = scimUser.userName;
  user.active = scimUser.active;
  user.data.scim = copy;
}
"""
_USER_RESPONSE = """
function convert(scimUser, user) {
  var stored = user.data.scim || {};
  Object.keys(stored).forEach(function (key) {
    if (key !== "id" && key !== "meta") { scimUser[key] = stored[key]; }
  });
}
"""
_GROUP_REQUEST = """
function convert(group, members, options, scimGroup) {
  var copy = JSON.parse(JSON.stringify(scimGroup));
  delete copy.members;
  group.name = scimGroup.displayName;
  group.data.scim = copy;
  (scimGroup.members || []).forEach(function (m) {
    members.push({userId: m.value, data: {$ref: m.$ref}});
  });
}
"""
_GROUP_RESPONSE = """
function convert(scimGroup, group, members, context) {
  var stored = group.data.scim || {};
  Object.keys(stored).forEach(function (key) {
    if (key !== "id" && key !== "meta") { scimGroup[key] = stored[key]; }
  });
}
"""
IDENTITY = {
    "userRequest": _USER_REQUEST,
    "enterpriseUserRequest": _USER_REQUEST,
    "userResponse": _USER_RESPONSE,
    "enterpriseUserResponse": _USER_RESPONSE,
    "groupRequest": _GROUP_REQUEST,
    "groupResponse": _GROUP_RESPONSE,
}


@pytest.fixture(scope="module")
def default_provider() -> ScimProvider:
    return load_default_provider()


@pytest.fixture(scope="module")
def identity_lambdas() -> Iterator[LambdaSet]:
    lambdas = LambdaSet(IDENTITY)
    yield lambdas
    lambdas.close()


class TestTenantStorage(ScimStorageContract):
    @pytest.fixture
    def provider(self, default_provider: ScimProvider) -> ScimProvider:
        """Share one parsed provider: building it takes a third of a second."""
        return default_provider

    @pytest.fixture
    def storage(
        self, tmp_path: Path, identity_lambdas: LambdaSet, provider: ScimProvider
    ) -> Iterator[TenantStorage]:
        store = Store(tmp_path / "contract.sqlite")
        tenant = Tenant(store, identity_lambdas, SandboxConfig(), tenant_id="t")
        yield TenantStorage(tenant, provider)
        store.close()
