"""cargohold: a local content-addressable store of OCI images, moved in and out as tarballs."""

from __future__ import annotations

__version__ = "0.1.0"
