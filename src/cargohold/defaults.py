"""Defaults every layer shares, in a module that imports nothing: the command line reads them
before it has loaded anything else (``cargohold --version`` pays for no more than this)."""

from __future__ import annotations

from typing import Final

#: The namespace names are kept in when none is given (containerd's is also ``default``).
DEFAULT_NAMESPACE: Final = "default"
