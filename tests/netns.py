"""Linux network namespaces as hosts for multi-host tests: a small routed network whose links can
be cut and restored, torn down completely — including what a crashed earlier run left behind.

The topology: one router namespace, and for every host a namespace with a veth link to the router
(link i is 10.N.i.0/24: the router is .1, the host .2 with its default route via the router). The
test process itself stays in the root namespace, like an operator's laptop: link 0 joins it to the
router, with a route to 10.N.0.0/16, so it reaches every host's listeners by address.

A cut between two hosts is a pair of `blackhole` policy rules in the router: packets between
exactly those two addresses vanish silently — no RST, no ICMP, as when a WAN link fails — while
both hosts still reach everything else. That needs only iproute2 (nft and iptables may be absent).

Every name starts with `tgmh-<pid of the test process>-`, so a later run recognises namespaces
whose creator has died and removes them, and never touches those of a run still going on.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess

PREFIX = "tgmh"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-")


class NetnsError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip …`; failures raise with iproute2's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def unavailable() -> str | None:
    """Why this machine cannot build namespace networks, or None when it can."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip`, which is not on PATH"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    added = ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` fails here: {added.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def namespaces() -> list[str]:
    listed = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_namespace(name: str) -> None:
    """Kill what still runs inside (only our own test processes live there), then delete it;
    its veths, their peers and their routes go with it."""
    for pid in ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", name, check=False)


def is_stale(name: str) -> bool:
    """Whether `name` carries our prefix and the test process that made it is gone."""
    m = _NAME.match(name)
    return m is not None and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1)))


def remove_stale() -> list[str]:
    """Remove the namespaces of earlier runs whose test process is gone; returns their names."""
    stale = [n for n in namespaces() if is_stale(n)]
    for name in stale:
        remove_namespace(name)
    return stale


def _free_subnet() -> int:
    """A second octet N such that nothing in the root namespace uses 10.N.0.0/16 yet."""
    used = ip("-4", "-o", "addr").stdout + ip("-4", "route").stdout
    for _ in range(200):
        n = random.randrange(100, 250)
        if f"10.{n}." not in used:
            return n
    raise NetnsError("no free 10.N.0.0/16 subnet for the namespace network")


class Lab:
    """The router, the hosts, the links; `close()` undoes all of it."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.net = _free_subnet()
        self.router = self._ns_name("router")
        self.namespaces: dict[str, str] = {}  # host -> namespace
        self.addrs: dict[str, str] = {}  # host -> address
        self.root_if = f"{PREFIX}{secrets.token_hex(4)}"  # <= 15 characters

    def _ns_name(self, host: str) -> str:
        return f"{PREFIX}-{self.token}-{host}"

    def start(self) -> None:
        self._add_ns(self.router)
        self._exec(self.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        ip("link", "add", self.root_if, "type", "veth", "peer", "name", "operator",
           "netns", self.router)
        ip("addr", "add", f"10.{self.net}.0.2/24", "dev", self.root_if)
        ip("link", "set", "dev", self.root_if, "up")
        ip("-n", self.router, "addr", "add", f"10.{self.net}.0.1/24", "dev", "operator")
        ip("-n", self.router, "link", "set", "dev", "operator", "up")
        ip("route", "add", f"10.{self.net}.0.0/16", "via", f"10.{self.net}.0.1",
           "dev", self.root_if)

    def add_host(self, host: str) -> str:
        """A namespace linked to the router; returns its address."""
        link = len(self.namespaces) + 1
        ns, subnet = self._ns_name(host), f"10.{self.net}.{link}"
        self.namespaces[host] = ns  # recorded first: close() must find a half-built host
        self._add_ns(ns)
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", host,
           "netns", self.router)
        ip("-n", ns, "addr", "add", f"{subnet}.2/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "dev", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", f"{subnet}.1")
        ip("-n", self.router, "addr", "add", f"{subnet}.1/24", "dev", host)
        ip("-n", self.router, "link", "set", "dev", host, "up")
        self.addrs[host] = f"{subnet}.2"
        return self.addrs[host]

    def wrap(self, host: str) -> list[str]:
        """The command prefix that runs a process on `host`."""
        return ["ip", "netns", "exec", self.namespaces[host]]

    def cut(self, a: str, b: str) -> None:
        """Drop every packet between hosts a and b, both ways, silently."""
        for src, dst in ((a, b), (b, a)):
            ip("-n", self.router, "rule", "add", "from", self.addrs[src], "to", self.addrs[dst],
               "blackhole")

    def restore(self, a: str, b: str) -> None:
        for src, dst in ((a, b), (b, a)):
            ip("-n", self.router, "rule", "del", "from", self.addrs[src], "to", self.addrs[dst],
               "blackhole")

    def close(self) -> None:
        for ns in [*self.namespaces.values(), self.router]:
            remove_namespace(ns)
        if ip("link", "show", "dev", self.root_if, check=False).returncode == 0:
            ip("link", "del", "dev", self.root_if, check=False)
        self.namespaces.clear()

    def _add_ns(self, ns: str) -> None:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "dev", "lo", "up")

    @staticmethod
    def _exec(ns: str, *command: str) -> None:
        ip("netns", "exec", ns, *command)
