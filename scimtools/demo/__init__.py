"""Build the demo tenant: invented people provisioned by Okta and Entra ID.

:mod:`scimtools.demo.generate` makes the people, the request streams and the IdP
views (pure data); :mod:`scimtools.demo.build` replays the streams into a
sandbox database. The record formats are documented in
:mod:`scimtools.demo.generate`.
"""

from .build import BuildReport, build_demo
from .generate import DemoData, Person, generate_demo

__all__ = ["BuildReport", "DemoData", "Person", "build_demo", "generate_demo"]
