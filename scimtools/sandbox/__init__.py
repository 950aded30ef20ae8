"""A local FusionAuth-compatible SCIM 2.0 server for tests, demos and rehearsals.

The only part of scimtools that imports scim2-server, scim2-models and mini-racer.
"""

from .config import SandboxConfig
from .faults import FaultPlan
from .lambdas import LambdaError, LambdaSet
from .server import Sandbox, load_seed
from .store import Tenant
from .tokens import PERMISSIONS, SandboxClient

__all__ = [
    "PERMISSIONS",
    "FaultPlan",
    "LambdaError",
    "LambdaSet",
    "Sandbox",
    "SandboxClient",
    "SandboxConfig",
    "Tenant",
    "load_seed",
]
