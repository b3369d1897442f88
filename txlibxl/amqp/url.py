"""
Broker URLs naming one node or several: :func:`parse_broker_url`.

``amqp://[user[:password]@]host[:port][,host[:port]...][/vhost]``: the
nodes of one cluster, tried in the order given (the first one first, the
next one when a connection fails or drops).  The port defaults to 5672,
the user and password to ``guest``, the virtual host to ``/`` (written
``%2F`` or left out).  Several whole URLs separated by spaces or commas
are accepted too when they share credentials and virtual host.
"""
from __future__ import annotations

import urllib.parse
from typing import Any, List, Tuple

import attr

__all__ = ["BrokerAddress", "BrokerURL", "parse_broker_url"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BrokerAddress:
    """One node's AMQP listener."""

    host: str
    port: int = 5672

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BrokerURL:
    """The nodes of a cluster, in order, and how to log in to them."""

    nodes: Tuple[BrokerAddress, ...]
    vhost: str = "/"
    username: str = "guest"
    password: str = attr.ib(default="guest", repr=False)

    def __str__(self) -> str:
        """The URL without the password (for logs)."""
        hosts = ",".join(str(n) for n in self.nodes)
        return f"amqp://{self.username}@{hosts}/{urllib.parse.quote(self.vhost, safe='')}"

    def connection_parameters(self, heartbeat: int = 10) -> Any:
        """pika ``ConnectionParameters`` for any node (pika's Twisted adapter ignores host and port)."""
        import pika

        return pika.ConnectionParameters(
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.username, self.password),
            heartbeat=heartbeat,
        )


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{url!r}: the port must be a number in 1..65535, not {text!r}")
    return int(text)


def _node(text: str, url: str) -> BrokerAddress:
    if not text:
        raise ValueError(f"{url!r}: an empty host in the node list")
    if text.startswith("["):  # [::1]:5672
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{url!r}: cannot read the node {text!r}")
        return BrokerAddress(host, _port(rest[1:], url) if rest else 5672)
    host, colon, port = text.rpartition(":")
    if not colon:
        return BrokerAddress(text)
    if not host:
        raise ValueError(f"{url!r}: an empty host in the node {text!r}")
    return BrokerAddress(host, _port(port, url))


def _split_urls(text: str) -> List[str]:
    parts = text.replace(",amqp://", " amqp://").split()
    return [p for p in parts if p]


def parse_broker_url(text: str) -> BrokerURL:
    """
    The :class:`BrokerURL` written as C{text}.

    :raises ValueError: not an ``amqp://`` URL, an empty or malformed node,
        a bad port, or several URLs that disagree on credentials or
        virtual host.
    """
    urls = _split_urls(text.strip())
    if not urls:
        raise ValueError("an empty broker URL")
    parsed = [_parse_one(u) for u in urls]
    first = parsed[0]
    nodes: List[BrokerAddress] = []
    for url, p in zip(urls, parsed):
        if (p.vhost, p.username, p.password) != (first.vhost, first.username, first.password):
            raise ValueError(f"{url!r}: every URL of the list must have the same credentials and virtual host")
        nodes.extend(n for n in p.nodes if n not in nodes)
    return attr.evolve(first, nodes=tuple(nodes))


def _parse_one(url: str) -> BrokerURL:
    if not url.startswith("amqp://"):
        raise ValueError(f"{url!r} is not an amqp:// URL (amqps is not supported)")
    rest = url[len("amqp://"):]
    location, slash, path = rest.partition("/")
    if "?" in path or "?" in location:
        raise ValueError(f"{url!r}: query parameters are not supported")
    credentials, at, hosts = location.rpartition("@")
    username, password = "guest", "guest"
    if at:
        user, colon, secret = credentials.partition(":")
        username = urllib.parse.unquote(user)
        password = urllib.parse.unquote(secret) if colon else ""
        if not username:
            raise ValueError(f"{url!r}: an empty user name")
    nodes = tuple(_node(h, url) for h in hosts.split(","))
    vhost = urllib.parse.unquote(path) if slash and path else "/"
    return BrokerURL(nodes, vhost, username, password)
