"""Build the demo tenant: invented people provisioned by Okta and Entra ID.

:mod:`scimtools.demo.generate` makes the people and the request streams (pure
data); :mod:`scimtools.demo.build` replays them into a sandbox database.
"""
