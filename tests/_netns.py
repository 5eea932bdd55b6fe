"""Small private networks of Linux network namespaces, for multi-host tests.

A :class:`Topology` makes one namespace per host plus one for a bridge; each
host gets a veth pair whose other end is a port of the bridge. The subnet is
private to the bridge: no namespace made here has a route or a link to any
other network (the veths are created inside the bridge's namespace and their
peers moved straight into the hosts' namespaces, never into the caller's), so
processes run in them can only talk to each other.

Everything made is removed by :meth:`Topology.close`, which first resumes
(SIGCONT) then kills (SIGKILL) every process left in the namespaces. It is
safe to call twice, runs at interpreter exit for topologies still open, and
namespaces left by a test run that died (their names carry its pid) are
removed by the next run (:func:`remove_stale`).

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ``ip``.
"""

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import time

#: Every namespace made here is named ``<PREFIX><pid>x<n><role>``.
PREFIX = "pmlt"
#: Seconds any single ``ip`` command may take.
IP_TIMEOUT = 20.0

_counter = itertools.count()
_open = []


def ip_command():
    """Path of iproute2's ``ip``, or None."""
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
         if os.access(p, os.X_OK)), None)


def ip(*args, check=True):
    """Run ``ip args``; its stdout. A failure raises with ip's stderr."""
    result = subprocess.run([ip_command(), *args], capture_output=True, text=True,
                            timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return result.stdout


def unavailable_reason():
    """Why namespaces with veths and a bridge cannot be made here, or None if they can."""
    if not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if ip_command() is None:
        return ("needs iproute2's `ip` command to create network namespaces "
                "(apt-get install -y iproute2)")
    remove_stale()
    try:
        probe = Topology(["probe"])
        probe.close()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces with veths and a bridge: {exc}"
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces():
    """Names of the network namespaces ``ip netns`` knows."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def remove_stale():
    """Remove namespaces left behind by test runs whose process no longer exists."""
    for name in list_namespaces():
        if not name.startswith(PREFIX):
            continue
        digits = name[len(PREFIX):].split("x", 1)[0]
        if digits.isdigit() and int(digits) != os.getpid() and not _pid_alive(int(digits)):
            _remove_namespace(name)


def namespace_pids(name):
    """Pids of the processes whose network namespace is ``name``."""
    return [int(p) for p in ip("netns", "pids", name, check=False).split()]


def signal_namespace(name, signum):
    """Send ``signum`` to every process in namespace ``name``; the pids signalled."""
    pids = namespace_pids(name)
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return pids


def _remove_namespace(name, wait=10.0):
    """Resume and kill every process in ``name``, then delete the namespace."""
    deadline = time.monotonic() + wait
    while True:
        pids = signal_namespace(name, signal.SIGCONT)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ip("netns", "delete", name, check=False)


class Topology:
    """Hosts (network namespaces) joined by a bridge in a namespace of its own.

    Parameters
    ----------
    roles : list of str
        Short host names (a few letters); host ``i`` gets address ``.{i + 1}``.

    Attributes
    ----------
    namespaces : dict
        ``role -> namespace name``.
    addresses : dict
        ``role -> IPv4 address`` in a /24 private to this topology.
    """

    def __init__(self, roles):
        tag = f"{PREFIX}{os.getpid()}x{next(_counter)}"
        self.bridge_namespace = f"{tag}br"
        self.namespaces = {role: f"{tag}{role}" for role in roles}
        # 10.200-249.x.0/24 from the pid: unlikely to be in use anywhere (and
        # never reachable from outside the bridge anyway).
        pid = os.getpid()
        self.subnet = f"10.{200 + pid % 50}.{(pid // 50) % 256}"
        self.addresses = {role: f"{self.subnet}.{i + 1}" for i, role in enumerate(roles)}
        self._ports = {role: f"v{i}" for i, role in enumerate(roles)}
        self._made = []
        self._processes = []
        _open.append(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        br = self.bridge_namespace
        ip("netns", "add", br)
        self._made.append(br)
        ip("-n", br, "link", "set", "lo", "up")
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "link", "set", "br0", "up")
        for role, ns in self.namespaces.items():
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            port = self._ports[role]
            # Both ends are born in the bridge's namespace and one moves to the host's.
            ip("-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", br, "link", "set", port, "master", "br0")
            ip("-n", br, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{self.addresses[role]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def exec_args(self, role, argv):
        """``argv`` run inside ``role``'s namespace."""
        return [ip_command(), "netns", "exec", self.namespaces[role], *argv]

    def popen(self, role, argv, **kwargs):
        """Start ``argv`` in ``role``'s namespace (killed by :meth:`close`)."""
        process = subprocess.Popen(self.exec_args(role, argv), **kwargs)
        self._processes.append(process)
        return process

    def pids(self, role):
        """Pids of the processes running in ``role``'s namespace."""
        return namespace_pids(self.namespaces[role])

    def signal(self, role, signum):
        """Send ``signum`` to every process of ``role``'s namespace; the pids signalled."""
        return signal_namespace(self.namespaces[role], signum)

    def link(self, role, up):
        """Set the bridge's port to ``role`` up or down (the host's cable, plugged or not)."""
        ip("-n", self.bridge_namespace, "link", "set", self._ports[role],
           "up" if up else "down")

    def close(self):
        """Kill every process in the namespaces, then delete them (veths and bridge go too)."""
        for ns in reversed(self._made):
            _remove_namespace(ns)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._made, self._processes = [], []
        if self in _open:
            _open.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@atexit.register
def _close_all():
    for topology in list(_open):
        topology.close()
