"""The API-server fixture gives a real control plane: CRDs, the status subresource, and the
controller manager (Deployments get ReplicaSets; owned objects are garbage-collected)."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP = "fixture.modeldeploy.dev"
PLURAL = "widgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas"],
                                "properties": {"replicas": {"type": "integer", "minimum": 0}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"readyReplicas": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def wait_for(predicate, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def namespace(k8s_client):
    core = client.CoreV1Api(k8s_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def widget_crd(k8s_client):
    ext = client.ApiextensionsV1Api(k8s_client)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as e:
        if e.status != 409:
            raise

    def established():
        crd = ext.read_custom_resource_definition(CRD["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))

    wait_for(established, what="CRD Established")
    return CRD


def test_crd_custom_resource_round_trips_with_status(k8s_client, widget_crd, namespace):
    api = client.CustomObjectsApi(k8s_client)
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 99},
    }
    created = wait_for(
        lambda: _create_when_served(api, namespace, body), what="custom resource to be served"
    )
    assert created["spec"] == {"replicas": 2}
    # With the status subresource, status in a create/update of the main resource is ignored...
    assert "status" not in created or not created["status"]

    # ...and is written through /status, which in turn leaves spec alone.
    created["status"] = {"readyReplicas": 1}
    created["spec"] = {"replicas": 5}
    updated = api.replace_namespaced_custom_object_status(GROUP, "v1alpha1", namespace, PLURAL, "w1", created)
    assert updated["status"] == {"readyReplicas": 1}
    assert updated["spec"] == {"replicas": 2}

    got = api.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, PLURAL, "w1")
    assert got["status"] == {"readyReplicas": 1}
    assert got["metadata"]["generation"] == 1

    # The schema is enforced by the API server.
    bad = dict(body, metadata={"name": "w2"}, spec={"replicas": -1})
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, PLURAL, bad)
    assert err.value.status == 422
    assert "spec.replicas" in err.value.body


def _create_when_served(api, namespace, body):
    try:
        return api.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, PLURAL, body)
    except ApiException as e:
        if e.status == 404:  # discovery of a just-established CRD can lag a moment
            return None
        raise


def test_deployment_gets_replicaset_and_is_garbage_collected(k8s_client, namespace):
    apps = client.AppsV1Api(k8s_client)
    labels = {"app": "web"}
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="example.invalid/web:1")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(namespace, dep)

    def owned_replicasets():
        rs = apps.list_namespaced_replica_set(namespace).items
        return [r for r in rs if any(o.uid == created.metadata.uid for o in (r.metadata.owner_references or []))]

    rs = wait_for(owned_replicasets, what="ReplicaSet owned by the Deployment")
    assert rs[0].spec.replicas == 2

    # The ReplicaSet controller creates the pods (no kubelet runs them).
    core = client.CoreV1Api(k8s_client)
    wait_for(lambda: len(core.list_namespaced_pod(namespace, label_selector="app=web").items) == 2, what="2 pods")

    # Deleting the Deployment garbage-collects its ReplicaSet.
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(lambda: not owned_replicasets(), what="ReplicaSet garbage collection")
