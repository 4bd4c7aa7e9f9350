"""Pods that run, without containers: kube-controller-manager (Deployments → ReplicaSets → Pods, and each
namespace's ``default`` ServiceAccount), kube-scheduler (Pods → a node) and kwok playing the kubelet of one fake
node, all as local processes against the end-to-end API server.

kwok (``sigs.k8s.io/kwok``) runs the stages kwokctl configures by default, copied from its module: the node
becomes Ready and keeps a heartbeat, a pod bound to it becomes Running and Ready at once. So a Deployment becomes
Available like in a cluster; one whose new pods cannot be scheduled (a host port the old pod holds) never
completes its rollout, which fails with ``ProgressDeadlineExceeded`` once ``progressDeadlineSeconds`` pass.
"""

from __future__ import annotations

from pathlib import Path

from e2e.build import PodTools
from e2e.kubeclient import JSON, KubeClient
from e2e.processes import Process, ProcessGroup
from support import free_port

NODE = "kwok-node-0"
READY_TIMEOUT = 120


class PodPlane(ProcessGroup):
    """kube-controller-manager, kube-scheduler and kwok with one node, until :meth:`stop`."""

    def __init__(self, tools: PodTools, kube: KubeClient, kubeconfig: Path, workdir: Path) -> None:
        self.tools = tools
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.logs = workdir / "logs"
        super().__init__()

    def start(self) -> None:
        with self._starting():
            self._run(
                "kube-controller-manager",
                self.tools.kube_controller_manager,
                [
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    # nodelifecycle lifts the not-ready taint a new node gets, once kwok reports it Ready
                    "--controllers=deployment,replicaset,serviceaccount,nodelifecycle",
                    "--secure-port=0",  # nobody reads its metrics; readiness is checked on what it does
                    "--concurrent-deployment-syncs=2",
                ],
            )
            self._run(
                "kube-scheduler",
                self.tools.kube_scheduler,
                [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0"],
            )
            stages = self.workdir / "kwok-stages.yaml"
            stages.write_text("\n---\n".join(p.read_text(encoding="utf-8") for p in self.tools.kwok_stages))
            self._run(
                "kwok",
                self.tools.kwok,
                [
                    f"--config={stages}",
                    f"--kubeconfig={self.kubeconfig}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    "--cidr=10.0.0.1/24",
                    "--node-ip=127.0.0.1",
                    f"--server-address=127.0.0.1:{free_port()}",
                ],
            )
            self.kube.create(_node())
            self._wait_node_ready()

    def _run(self, name: str, binary: Path, args: list[str]) -> None:
        home = self.workdir / "tmp" / name
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home)}
        self._processes.append(Process(name, [str(binary), *args], self.logs, env=env))

    def _wait_node_ready(self) -> None:
        kwok = self._processes[-1]

        def ready() -> bool:
            node = self.kube.get("v1", "Node", NODE)
            conditions = (node.get("status") or {}).get("conditions") or []
            tainted = any(t.get("key") == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or [])
            return not tainted and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        kwok.wait_until(ready, f"making node {NODE} Ready (and the not-ready taint lifted)", READY_TIMEOUT)
        self.check_running()


def _node() -> JSON:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }


def wait_available(kube: KubeClient, name: str, namespace: str, timeout: float = 60) -> JSON:
    """The Deployment once ``Available=True`` for its current generation."""

    def available(deployment: JSON) -> bool:
        status = deployment.get("status") or {}
        fresh = status.get("observedGeneration") == deployment["metadata"]["generation"]
        conditions = status.get("conditions") or []
        return fresh and any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    return kube.wait_for("apps/v1", "Deployment", name, namespace, available, what="Available", timeout=timeout)
