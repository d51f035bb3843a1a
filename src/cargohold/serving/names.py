"""Which stored repository a registry request means.

A client asks for ``/v2/<name>/...``. Without ``?ns=`` the name is read as ``docker pull``
would read it, so ``alpine`` and ``library/alpine`` mean ``docker.io/library/alpine`` and
``example.com/app`` means ``example.com/app``. containerd (and k3s), using a host as a mirror
for another registry, add ``?ns=<that registry>``: then ``<name>`` is a path on that registry,
and ``library/alpine?ns=docker.io`` means ``docker.io/library/alpine`` while
``app?ns=ghcr.io`` means ``ghcr.io/app``. One server can so stand in for every registry a
cluster's images came from.
"""

from __future__ import annotations

from typing import Final

from ..oci.references import DEFAULT_DOMAIN, Reference, parse_repository

#: The hosts of Docker Hub a client may name with ``?ns=`` (containerd sends ``docker.io``).
DOCKER_HUB_HOSTS: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def store_repository(name: str, ns: str | None) -> str:
    """The stored repository (``docker.io/library/alpine``) request name *name* means, with
    containerd's *ns* when the request carries one. Raises InvalidReferenceError when
    *name* (or *ns*) cannot be part of an image name."""
    if not ns:
        return parse_repository(name)
    if ns.lower() in DOCKER_HUB_HOSTS:
        return parse_repository(f"{DEFAULT_DOMAIN}/{name}")
    return Reference(ns, name).repository  # validates the host and the path


def request_name(repository: str, ns: str | None) -> str | None:
    """The name a client gives to ask for stored *repository* (for the catalog): its path on
    *ns* when one is given (None when it is another registry's), else the repository as
    ``docker pull`` takes it, with Docker Hub's domain left out."""
    domain, _, path = repository.partition("/")
    if ns:
        wanted = DEFAULT_DOMAIN if ns.lower() in DOCKER_HUB_HOSTS else ns
        return path if domain == wanted else None
    return path if domain == DEFAULT_DOMAIN else repository
