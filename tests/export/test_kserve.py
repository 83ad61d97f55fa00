"""Kubernetes / KServe manifests, validated against the Kubernetes OpenAPI schemas (kubernetes-validate's
strict JSON schemas: unknown fields are errors). The InferenceService is a custom resource: its
predictor's pod part is validated as a Pod, and its KServe fields against KServe's PredictorSpec."""

from __future__ import annotations

import copy
import json

import kubernetes_validate as kv
import pytest
import yaml

from modelport.errors import InputError
from modelport.export import export, kserve

VERSION = kv.latest_version()
# serving.kserve.io/v1beta1 PredictorSpec = ComponentExtensionSpec + the PodSpec fields (inline) +
# the model / framework specs (https://kserve.github.io/website/docs/reference/crd-api)
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType",
                           "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher",
                           "labels", "annotations", "deploymentStrategy", "autoScaling", "workerSpec", "model"}


@pytest.fixture(scope="module")
def manifests(bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("k8s") / "k8s"
    result = export(bundles.churn, "kserve", out, image="registry.example/churn:1", namespace="models",
                    replicas=2, max_replicas=6, cpu="250m", memory="384Mi")
    docs = {rel.split("/")[-1].split(".")[0]: yaml.safe_load((out / rel).read_text()) for rel in result.files.values()}
    return result, docs


@pytest.mark.parametrize("kind", ["deployment", "service", "hpa"])
def test_plain_manifests_are_valid_kubernetes(manifests, kind):
    _, docs = manifests
    assert kv.validate(docs[kind], VERSION, strict=True)
    # the validator is strict: a misspelt field is an error (so the check above means something)
    broken = copy.deepcopy(docs[kind])
    broken["spec"]["replicaz"] = 1
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, VERSION, strict=True)


def test_deployment_probes_resources_and_security(manifests):
    _, docs = manifests
    dep = docs["deployment"]
    assert dep["metadata"]["namespace"] == "models" and dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "registry.example/churn:1"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"memory": "384Mi"}}
    sec = c["securityContext"]
    assert sec["runAsNonRoot"] and sec["runAsUser"] == 10001 and sec["readOnlyRootFilesystem"]
    assert sec["capabilities"] == {"drop": ["ALL"]} and not sec["allowPrivilegeEscalation"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30  # longer than the server's drain
    svc, hpa = docs["service"], docs["hpa"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_inference_service(manifests):
    _, docs = manifests
    isvc = docs["inferenceservice"]
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    predictor = isvc["spec"]["predictor"]
    assert list(isvc["spec"]) == ["predictor"]
    (c,) = predictor["containers"]
    assert c["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in c["env"]  # how KServe learns a custom container's protocol
    assert c["ports"][0]["name"] == "http1"  # Knative accepts http1 or h2c
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # the pod part of the predictor is a valid pod spec ...
    pod_fields = {k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "churn-predictor"}, "spec": pod_fields}
    assert kv.validate(pod, VERSION, strict=True)
    # ... and the rest are KServe's own fields
    assert set(predictor) - set(pod_fields) <= KSERVE_COMPONENT_FIELDS
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    labels = isvc["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "modelport"
    assert isvc["metadata"]["annotations"]["modelport.io/bundle-digest"].startswith("sha256:")


def test_kustomization_and_defaults(bundles, tmp_path):
    result = export(bundles.iris, "kserve", tmp_path / "k")
    kust = yaml.safe_load((tmp_path / "k" / "kubernetes" / "kustomization.yaml").read_text())
    assert kust["resources"] == ["deployment.yaml", "service.yaml", "hpa.yaml"]
    dep = yaml.safe_load((tmp_path / "k" / result.files["deployment"]).read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "localhost/iris:1" and c["resources"]["requests"]["memory"] == "320Mi"
    assert "namespace" not in dep["metadata"]
    assert json.loads((tmp_path / "k" / "export.json").read_text())["target"] == "kserve"


@pytest.mark.parametrize(("options", "message"), [
    ({"max_replicas": 1, "replicas": 3}, "at least --replicas"),
    ({"namespace": "Bad_NS"}, "DNS label"),
    ({"cpu": "lots"}, "Kubernetes quantity"),
    ({"memory": "12 GB"}, "Kubernetes quantity"),
])
def test_bad_options(bundles, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        export(bundles.iris, "kserve", tmp_path / "k", **options)
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(("name", "want"), [("churn", "churn"), ("Churn_Model.v2", "churn-model-v2"),
                                            ("3tier", "m-3tier"), ("x" * 80, "x" * 63)])
def test_resource_names(name, want):
    assert kserve.resource_name(name) == want
