"""Audit and migrate SCIM-provisioned FusionAuth tenants."""

__version__ = "0.1.0"
