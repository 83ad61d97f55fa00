"""``--target kserve``: Kubernetes manifests for the image of ``--target container``.

    dist/k8s/
      kserve/inferenceservice.yaml     a KServe InferenceService with a custom predictor (the image),
                                       speaking the Open Inference Protocol (V2) on port 8080
      kubernetes/deployment.yaml       the same pod as a plain Deployment ...
      kubernetes/service.yaml          ... a ClusterIP Service in front of it ...
      kubernetes/hpa.yaml              ... and a HorizontalPodAutoscaler (autoscaling/v2, CPU)
      kubernetes/kustomization.yaml    kubectl apply -k dist/k8s/kubernetes

Both pods run the image as its non-root user with a read-only root file system (``/tmp`` is an
``emptyDir``), readiness and liveness probes on ``/v2/health/ready`` and ``/v2/health/live``, a
startup probe that allows for loading the bundle, CPU and memory requests (memory sized from the
bundle unless given), a termination grace period longer than the server's drain, and Prometheus
scrape annotations for ``/metrics`` on the HTTP port. The custom predictor sets ``PROTOCOL=v2``,
which is how KServe learns a custom container's protocol, and names its port ``http1`` as
Knative requires.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport.errors import InputError
from modelport.export import _artifact
from modelport.export._result import ExportResult
from modelport.export.container import DEFAULT_PORT, UID

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
DRAIN_SECONDS = 30


def export(
    bundle: Any,
    output: str | Path,
    *,
    image: str | None = None,
    port: int | None = None,
    replicas: int | None = None,
    max_replicas: int | None = None,
    namespace: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    yaml = require("yaml", purpose="writing Kubernetes manifests")
    name = resource_name(bundle.name)
    port = port or DEFAULT_PORT
    image = image or f"localhost/{name}:{bundle.version or 'latest'}"
    min_r = replicas or 1
    max_r = max_replicas or max(5, min_r)
    if max_r < min_r:
        raise InputError(f"--max-replicas ({max_r}) must be at least --replicas ({min_r}).")
    if namespace is not None and not _NAME.match(namespace):
        raise InputError(f"--namespace must be a DNS label (lowercase letters, digits, '-'); got {namespace!r}.")
    cpu = _quantity("--cpu", cpu or "500m")
    memory = _quantity("--memory", memory or default_memory(bundle.size))
    docs = manifests(bundle, name=name, image=image, port=port, min_replicas=min_r, max_replicas=max_r,
                     namespace=namespace, cpu=cpu, memory=memory)
    with _artifact.staging(output, overwrite=overwrite) as root:
        files: dict[str, str] = {}
        for rel, doc in docs.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# written by `modelport export --target kserve` for bundle {bundle.digest}\n"
                            + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
            files[rel.split("/")[-1].split(".")[0]] = rel
        kustom = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                  "resources": ["deployment.yaml", "service.yaml", "hpa.yaml"]}
        (root / "kubernetes" / "kustomization.yaml").write_text(yaml.safe_dump(kustom, sort_keys=False))
        (root / "DEPLOY.md").write_text(_deploy(name, image, port, bundle.name))
        result = ExportResult(
            target="kserve", path=Path(output), bundle=bundle.name, digest=bundle.digest, files=files,
            sizes={"bundle": bundle.size},
            details={"image": image, "port": port, "replicas": [min_r, max_r], "cpu": cpu, "memory": memory,
                     "namespace": namespace},
        )
        result.write_summary(root)
    return result


def resource_name(name: str) -> str:
    """A Kubernetes resource name (DNS-1035 label) for a bundle name."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if out and not out[0].isalpha():
        out = "m-" + out
    out = out[:63].rstrip("-")
    if not out:
        raise InputError(f"cannot make a Kubernetes name from the bundle name {name!r}.")
    return out


def default_memory(bundle_bytes: int) -> str:
    """Room for the server (~200 MiB) and the ONNX Runtime session (a few times the graph)."""
    mib = 256 + 4 * ((bundle_bytes + (1 << 20) - 1) >> 20)
    return f"{((mib + 63) // 64) * 64}Mi"


def _quantity(flag: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise InputError(f"{flag} must be a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi; got {value!r}.")
    return value


def _container(name: str, image: str, port: int, cpu: str, memory: str, *, port_name: str,
               extra_env: list[dict[str, str]]) -> dict[str, Any]:
    probe_port: Any = port_name if port_name == "http" else port
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "PORT", "value": str(port)}, *extra_env],
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": probe_port},
                         "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": probe_port},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": probe_port},
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def manifests(bundle: Any, *, name: str, image: str, port: int, min_replicas: int, max_replicas: int,
              namespace: str | None, cpu: str, memory: str) -> dict[str, dict[str, Any]]:
    """The manifests, as documents keyed by their path in the export."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "predictor",
              "app.kubernetes.io/managed-by": "modelport"}
    if bundle.version:
        labels["app.kubernetes.io/version"] = re.sub(r"[^A-Za-z0-9_.-]", "-", str(bundle.version))[:63]
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
    annotations = {"modelport.io/bundle-digest": bundle.digest, "modelport.io/model": bundle.name}

    def meta(extra: dict[str, str] | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name, "labels": dict(labels), "annotations": {**annotations, **(extra or {})}}
        if namespace:
            m["namespace"] = namespace
        return m

    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta({"serving.kserve.io/enable-prometheus-scraping": "true",
                          "prometheus.kserve.io/port": str(port), "prometheus.kserve.io/path": "/metrics"}),
        "spec": {"predictor": {
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "labels": dict(labels),
            "annotations": dict(scrape),
            "terminationGracePeriodSeconds": DRAIN_SECONDS + 10,
            "containers": [_container("kserve-container", image, port, cpu, memory, port_name="http1",
                                      extra_env=[{"name": "PROTOCOL", "value": "v2"}])],
            "volumes": volumes,
        }},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(),
        "spec": {
            "replicas": min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {**scrape, **annotations}},
                "spec": {
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + 10,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
                    "containers": [_container("modelport", image, port, cpu, memory, port_name="http", extra_env=[])],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(scrape),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                          "target": {"type": "Utilization", "averageUtilization": 70}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    return {
        "kserve/inferenceservice.yaml": isvc,
        "kubernetes/deployment.yaml": deployment,
        "kubernetes/service.yaml": service,
        "kubernetes/hpa.yaml": hpa,
    }


def _deploy(name: str, image: str, port: int, model: str) -> str:
    return f"""# Deploying {model} on Kubernetes

The manifests run the image `{image}` (make it with `modelport export BUNDLE --target container
--build {image}`, then push it where the cluster pulls from; `--image` names another).

With KServe (custom predictor, Open Inference Protocol):

```bash
kubectl apply -f kserve/inferenceservice.yaml
kubectl get inferenceservice {name}
curl -s -H "Host: $(kubectl get isvc {name} -o jsonpath='{{.status.url}}' | cut -d/ -f3)" \\
  http://INGRESS/v2/models/{model}/infer -d @request.json
```

Plain Kubernetes (Deployment, Service, HorizontalPodAutoscaler on CPU):

```bash
kubectl apply -k kubernetes/
kubectl port-forward svc/{name} {port}:80 &
curl -s localhost:{port}/v2/models/{model}/records -d '{{"records": [{{...}}]}}'
```

Prometheus scrapes `/metrics` on port {port} (pod annotations `prometheus.io/*`; KServe's
`serving.kserve.io/enable-prometheus-scraping`).
"""
