"""The store's root on disk: blobs, staging, metadata (SQLite), leases and collection, and the
file-system helpers for writing outputs.
"""
