"""The public API: what `scimtools` exports is what `__all__` says."""

from __future__ import annotations

import types

import scimtools


def test_all_is_sorted_and_unique() -> None:
    assert scimtools.__all__ == sorted(set(scimtools.__all__))


def test_all_matches_the_public_names_of_the_package() -> None:
    exposed = {
        name
        for name, value in vars(scimtools).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert set(scimtools.__all__) == exposed


def test_every_exported_name_resolves() -> None:
    for name in scimtools.__all__:
        assert getattr(scimtools, name) is not None


def test_importing_the_package_does_not_import_the_sandbox() -> None:
    import subprocess
    import sys

    code = "import sys, scimtools; print('scimtools.sandbox' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "False"
