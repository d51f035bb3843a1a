"""The OCI Distribution client: HTTP, authentication, credentials and uploads.

``client.RegistryClient`` is the entry point, and ``client`` re-exports the names callers use;
the other modules each own one concept under it.
"""
