"""The OCI model, pure: digests, references, platforms, media types and strict documents, and the
image graph over any content source.
"""
