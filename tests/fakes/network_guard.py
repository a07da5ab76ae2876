"""Pytest plugin: forbid tests from reaching the real network (e.g. api.telegram.org).

Register it from a conftest::

    pytest_plugins = ["tests.fakes.network_guard"]

While the plugin is loaded, DNS lookups and connections to anything that is not loopback
raise ``NetworkBlockedError`` (a ``RuntimeError``: "test tried to reach the real network:
..."). That covers ``socket.getaddrinfo`` / ``gethostbyname*`` (also when asyncio runs
``loop.getaddrinfo`` in its executor thread, which is how httpx/anyio - and so PTB - and
aiohttp resolve names) and ``socket.socket.connect`` / ``connect_ex`` / ``sendto`` (which
asyncio's ``sock_connect`` uses), so a literal IP address is caught too.

Allowed: 127.0.0.0/8, ::1, "localhost", the unspecified addresses (binding), unix sockets
(PostgreSQL's socket), and hosts listed in the ``CAREBOT_TEST_ALLOWED_HOSTS`` environment
variable (comma-separated, e.g. a CI database host ``postgres``; addresses it resolves to
are allowed too).

Code under test may swallow the error (PTB turns it into ``telegram.error.NetworkError``), so
the autouse ``network_guard`` fixture also records every blocked attempt and fails the test
at teardown. A test that expects a blocked attempt says so::

    def test_x(network_guard):
        with network_guard.expect_blocked():
            ...

``@pytest.mark.allow_network`` turns the guard off for one test.

The patches are installed in ``pytest_configure`` (so collection and session-scoped fixtures
are covered as well) and removed in ``pytest_unconfigure``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["NetworkBlockedError", "NetworkGuard", "is_local_host", "network_guard"]

ALLOWED_HOSTS_ENV = "CAREBOT_TEST_ALLOWED_HOSTS"
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class NetworkBlockedError(RuntimeError):
    """Raised when a test tries to reach a non-loopback host."""


class NetworkGuard:
    """Per-test view of blocked network attempts (the ``network_guard`` fixture)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._acknowledged = 0
        self._lock = threading.Lock()

    def _record(self, what: str) -> None:
        with self._lock:
            self.violations.append(what)

    @property
    def unexpected(self) -> list[str]:
        return self.violations[self._acknowledged :]

    @contextlib.contextmanager
    def expect_blocked(self) -> Iterator[NetworkGuard]:
        """Assert the block runs into the guard at least once; don't fail the test for it."""
        before = len(self.violations)
        yield self
        if len(self.violations) == before:
            raise AssertionError("expected a real-network attempt to be blocked, saw none")
        self._acknowledged = len(self.violations)


class _State:
    def __init__(self) -> None:
        self.enabled = True
        self.current: NetworkGuard | None = None
        self.extra_names: set[str] = set()
        self.extra_ips: set[str] = set()
        self.originals: dict[tuple[Any, str], Any] = {}


_state = _State()


def _normalize_host(host: Any) -> str:
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode("ascii", "replace")
    host = str(host).strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.split("%", 1)[0].rstrip(".")  # IPv6 zone id, FQDN dot


def is_local_host(host: Any) -> bool:
    """True for loopback / unspecified addresses, localhost names and allowed extra hosts."""
    if host is None:
        return True  # getaddrinfo(None, port): passive / local address for binding
    name = _normalize_host(host)
    if name in ("", *_LOCAL_NAMES) or name.endswith(".localhost"):
        return True
    if name in _state.extra_names or name in _state.extra_ips:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _block(what: str) -> None:
    message = f"test tried to reach the real network: {what}"
    guard = _state.current
    if guard is not None:
        guard._record(what)
    raise NetworkBlockedError(message)


def _check_host(host: Any, what: str) -> None:
    if _state.enabled and not is_local_host(host):
        _block(what)


def _check_address(sock: socket.socket, address: Any, what: str) -> None:
    if not _state.enabled:
        return
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets, netlink, ...
    if isinstance(address, tuple) and address:
        _check_host(address[0], f"{what}({address!r})")


def _orig(owner: Any, name: str) -> Any:
    return _state.originals[(owner, name)]


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    _check_host(host, f"getaddrinfo({host!r}, {port!r})")
    result = _orig(socket, "getaddrinfo")(host, port, *args, **kwargs)
    if host is not None and _normalize_host(host) in _state.extra_names:
        _state.extra_ips.update(str(sockaddr[0]) for *_, sockaddr in result)
    return result


def _gethostbyname(host: Any) -> Any:
    _check_host(host, f"gethostbyname({host!r})")
    return _orig(socket, "gethostbyname")(host)


def _gethostbyname_ex(host: Any) -> Any:
    _check_host(host, f"gethostbyname_ex({host!r})")
    return _orig(socket, "gethostbyname_ex")(host)


def _connect(self: socket.socket, address: Any) -> Any:
    _check_address(self, address, "connect")
    return _orig(socket.socket, "connect")(self, address)


def _connect_ex(self: socket.socket, address: Any) -> Any:
    _check_address(self, address, "connect_ex")
    return _orig(socket.socket, "connect_ex")(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    if args:
        _check_address(self, args[-1], "sendto")
    return _orig(socket.socket, "sendto")(self, data, *args)


_PATCHES: tuple[tuple[Any, str, Any], ...] = (
    (socket, "getaddrinfo", _getaddrinfo),
    (socket, "gethostbyname", _gethostbyname),
    (socket, "gethostbyname_ex", _gethostbyname_ex),
    (socket.socket, "connect", _connect),
    (socket.socket, "connect_ex", _connect_ex),
    (socket.socket, "sendto", _sendto),
)


def install() -> bool:
    """Patch the socket module; False if it already was."""
    if _state.originals:
        return False
    extra = os.environ.get(ALLOWED_HOSTS_ENV, "")
    _state.extra_names = {_normalize_host(h) for h in extra.split(",") if h.strip()}
    for owner, name, replacement in _PATCHES:
        _state.originals[(owner, name)] = getattr(owner, name)
        setattr(owner, name, replacement)
    return True


def uninstall() -> None:
    for (owner, name), original in _state.originals.items():
        setattr(owner, name, original)
    _state.originals.clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_network: let this test reach non-loopback hosts (network guard off)"
    )
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


@pytest.fixture(autouse=True)
def network_guard(request: pytest.FixtureRequest) -> Iterator[NetworkGuard]:
    """Fail the test if it tried to reach a non-loopback host (see module docstring)."""
    # Normally installed by pytest_configure; a test module that imports this fixture
    # without the plugin being registered gets the patches for its own tests only.
    installed_here = install()
    guard = NetworkGuard()
    enabled = request.node.get_closest_marker("allow_network") is None
    _state.current, _state.enabled = guard, enabled
    try:
        yield guard
    finally:
        _state.current, _state.enabled = None, True
        if installed_here:
            uninstall()
    if guard.unexpected:
        pytest.fail(
            "test tried to reach the real network (blocked by tests/fakes/network_guard.py):\n  "
            + "\n  ".join(guard.unexpected),
            pytrace=False,
        )
