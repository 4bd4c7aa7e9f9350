"""Run one program in a network namespace of its own, joined to the host's loopback by port forwarders.

Keptn's shipyard-controller and resource-service both listen on the fixed port 8080 (and the first on 8081 too);
on the host they would collide with each other, with a second test run, and with anything else on the machine.
This launcher is started as ``unshare --mount -- python netns.py <spec.json>`` (a private mount namespace, made
by util-linux) and then, itself still on the host network:

1. binds the host-side ``inbound`` ports on 127.0.0.1 (free ports the test picked), forwarding each to a port
   inside the new namespace (for example 8080);
2. unshares the network namespace and brings its loopback up;
3. in the new namespace listens on each ``outbound`` port on 127.0.0.1 and forwards it to the same port on the
   host's loopback (NATS, the API server, FerretDB, ...), so the program's configuration names ordinary
   127.0.0.1 addresses;
4. mounts a tmpfs over ``/run`` (private to this mount namespace, never on the real filesystem) and writes the
   Kubernetes service-account files there, which ``rest.InClusterConfig()`` reads from
   ``/var/run/secrets/kubernetes.io/serviceaccount``;
5. runs the program as its child and exits with its exit code; SIGTERM is passed on to it.

A thread's network namespace is fixed when it creates a socket, so the forwarders switch a connection's thread
to the host namespace (``setns``) before connecting out. Linux only; needs the privilege to unshare namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SERVICE_ACCOUNT = Path("/run/secrets/kubernetes.io/serviceaccount")  # /var/run is a link to /run
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _join(client: socket.socket, port: int, host_netns: int | None) -> None:
    """Connect to 127.0.0.1:``port`` (in the host's namespace when ``host_netns`` is given) and copy both ways."""
    if host_netns is not None:
        _check(_libc.setns(host_netns, CLONE_NEWNET), "setns to the host network")
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, port: int, host_netns: int | None) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_join, args=(client, port, host_netns), daemon=True).start()


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    return listener


def _die_with_parent() -> None:
    """In the child: SIGKILL when this launcher dies, so a killed launcher never leaves the program behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    inbound = [(_listen(int(host)), int(inner)) for host, inner in spec["inbound"]]  # still on the host network
    host_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    _check(_libc.unshare(CLONE_NEWNET), "unshare of the network namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for listener, inner in inbound:
        threading.Thread(target=_serve, args=(listener, inner, None), daemon=True).start()
    for port in spec["outbound"]:
        threading.Thread(target=_serve, args=(_listen(int(port)), int(port), host_netns), daemon=True).start()
    account = spec.get("serviceaccount")
    if account:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "keptn-e2e", "/run"], check=True)
        SERVICE_ACCOUNT.mkdir(parents=True)
        (SERVICE_ACCOUNT / "token").write_text(account["token"])
        (SERVICE_ACCOUNT / "ca.crt").write_text(Path(account["ca"]).read_text())
        (SERVICE_ACCOUNT / "namespace").write_text(account["namespace"])
    child = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec.get("cwd"), preexec_fn=_die_with_parent)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    signal.signal(signal.SIGINT, lambda *_: child.terminate())
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
