"""The demo's embedded GitOps repository and configuration (a Kustomize overlay per service, as Flux users have)."""

from __future__ import annotations

from typing import Any

PROJECT, STAGE, SERVICE = "sockshop", "dev", "carts"

REPOSITORY_FILES = {
    "README.md": "# fleet\n\nThe demo's GitOps repository; Flux applies `apps/<stage>/<service>`.\n",
    "apps/dev/carts/kustomization.yaml": """\
# carts in dev: applied by Flux, image updated by keptn-gitops-service
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: sockshop-dev
resources:
  - deployment.yaml

images:
  - name: docker.io/keptnexamples/carts
    newTag: 0.13.0 # {"$imagepolicy": "flux-system:carts:tag"}
""",
    "apps/dev/carts/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: carts
spec:
  replicas: 1
  selector:
    matchLabels: {app: carts}
  template:
    metadata:
      labels: {app: carts}
    spec:
      containers:
        - name: carts
          image: docker.io/keptnexamples/carts  # the tag comes from kustomization.yaml
          ports:
            - containerPort: 8080
""",
}

CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: {url}
    branch: main
    author: {{name: keptn-gitops-service, email: gitops@keptn.invalid}}
rules:
  - match: {{project: sockshop, stage: "*", service: "*"}}
    repository: fleet
    updates:
      - file: "apps/{{stage}}/{{service}}/kustomization.yaml"
        kustomizeImage: {{name: "docker.io/keptnexamples/{{service}}"}}
    wait:
      flux: {{kind: Kustomization, name: "{{service}}", namespace: "{{project}}-{{stage}}"}}
      timeout: 2m
    deploymentURIs:
      local: ["http://{{service}}.{{project}}-{{stage}}:80"]
"""

GIT_REPOSITORY: dict[str, Any] = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "GitRepository",
    "metadata": {"name": "fleet", "namespace": "flux-system"},
    "spec": {"interval": "1m", "url": "", "ref": {"branch": "main"}},
}

KUSTOMIZATION: dict[str, Any] = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": SERVICE, "namespace": f"{PROJECT}-{STAGE}"},
    "spec": {
        "interval": "10m",
        "path": f"./apps/{STAGE}/{SERVICE}",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"},
    },
}
