"""The OCI Distribution client: HTTP, authentication, credentials and uploads."""
