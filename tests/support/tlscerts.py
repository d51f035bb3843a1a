"""A self-signed certificate for 127.0.0.1, for the TLS servers of the tests (the fake
registry, Distribution, ``cargohold serve``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def self_signed_certificate(
    directory: Path, cert_name: str = "cert.pem", key_name: str = "key.pem"
) -> tuple[Path, Path]:
    """A P-256 certificate for ``127.0.0.1`` (as its name and its subjectAltName), valid for
    two days, and its key, written by ``openssl`` into *directory*: (certificate, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed (.ci/run installs it)", pytrace=False)
    cert, key = directory / cert_name, directory / key_name
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    return cert, key
