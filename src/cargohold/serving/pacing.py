"""No congestion control pacing on loopback connections.

With BBR as the system's congestion control and no ``fq`` queueing discipline (the default
``pfifo_fast`` or ``noqueue``, which loopback has), the kernel paces a TCP connection itself
with a high-resolution timer armed for every few segments. Over a real network that pacing is
BBR's purpose; on loopback there is no network to pace for, and the timers cost more than the
sending: a 200 MiB blob sent with ``sendfile`` to a local curl took 0.11-0.14 s of the
server's kernel time paced and about 0.01 s not, and ran at about 1,500 MiB/s instead of
3,800 MiB/s (2 vCPUs under KVM, where arming a timer exits to the hypervisor; bench/serve.py).

A local client is the common case of ``cargohold serve`` (containerd or a k3s node using
the server on the same host as its mirror). So a connection whose peer is a loopback address
is switched to Reno, which is built into every Linux kernel and always allowed to
unprivileged processes (``tcp_allowed_congestion_control``); with no loss and microsecond
round trips it simply sends as fast as the receiver reads. Connections from other machines
keep the system's choice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Final

#: The congestion control every Linux kernel has and lets anyone choose.
LOOPBACK_CONGESTION: Final = b"reno"
#: ``TCP_CONGESTION`` (13 on Linux); absent on other systems, where nothing is changed.
_TCP_CONGESTION: Final = getattr(socket, "TCP_CONGESTION", None)


def is_loopback_peer(peer: object) -> bool:
    """Whether *peer* (a socket's ``getpeername()``) is a loopback address, an IPv4 one
    mapped into IPv6 (a dual-stack listener's ``::ffff:127.0.0.1``) included."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return False
    try:
        address = ipaddress.ip_address(peer[0].partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def unpace_listener(sock: socket.socket) -> bool:
    """Give the connections *sock* (listening on a loopback address) will accept
    :data:`LOOPBACK_CONGESTION` from the start (an accepted socket inherits its listener's):
    switching an established connection later still leaves the kernel pacing part of the
    time. Whether it was set."""
    if _TCP_CONGESTION is None or sock.family not in _INET:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, LOOPBACK_CONGESTION)
    except OSError:
        return False
    return True


def unpace_loopback(sock: socket.socket | None) -> bool:
    """Switch *sock* to :data:`LOOPBACK_CONGESTION` when its peer is on this machine; whether
    it was switched. Anything that refuses (not TCP, not Linux, the peer gone) leaves the
    socket as it is: this only makes sending cheaper, it is never needed."""
    if sock is None or _TCP_CONGESTION is None or sock.family not in _INET:
        return False
    with contextlib.suppress(OSError):
        if not is_loopback_peer(sock.getpeername()):
            return False
        if sock.getsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, 16).rstrip(b"\0") == (
            LOOPBACK_CONGESTION
        ):
            return True
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, LOOPBACK_CONGESTION)
        return True
    return False


_INET: Final = (socket.AF_INET, socket.AF_INET6)
