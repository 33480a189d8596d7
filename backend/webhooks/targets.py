"""Which webhook targets are allowed: public addresses only, unless AQPL_WEBHOOK_ALLOW_PRIVATE.

Checked at registration and again before every delivery: a host that resolved to a public address
when it was registered may resolve to 127.0.0.1 later (DNS rebinding). Every address the host
resolves to must be public, since the HTTP client may connect to any of them.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL's host is not one deliveries may go to; the message says why."""


def is_public(address: IpAddress) -> bool:
    """False for loopback, private, link-local, reserved, multicast, unspecified and other
    non-global addresses (an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def resolve(url: str) -> list[IpAddress]:
    """Every address the URL's host resolves to (TargetRefused if it resolves to none)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        raise TargetRefused(f"{url!r} is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as error:  # gaierror; UnicodeError for a label IDNA refuses
        raise TargetRefused(f"the host {host!r} does not resolve ({error})") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    return sorted(addresses, key=str)


def check_target(url: str, *, allow_private: bool) -> None:
    """TargetRefused unless every address of the URL's host is public (or private ones are allowed)."""
    addresses = resolve(url)
    if allow_private:
        return
    refused = [address for address in addresses if not is_public(address)]
    if refused:
        host = urlsplit(url).hostname
        raise TargetRefused(
            f"the host {host!r} resolves to {refused[0]}, a loopback, private or reserved address; "
            "webhooks go to public addresses only (AQPL_WEBHOOK_ALLOW_PRIVATE=true allows others)"
        )
