"""ModelDeployment end to end on the kind cluster, as a user runs it.

Images from the two Dockerfiles, the chart installed with ``helm``, the examples applied with
``kubectl``, inference through the Service from the host (port-forward on 127.0.0.1) and from a
pod inside the cluster (the URL in the resource's status), a Hugging Face language model driven
with the openai SDK, a rolling update to a new model version under a request loop with zero failed
requests, and deletion leaving nothing behind.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
import tritonclient.http as httpclient

from tests import hf_models, keras_models, models, s3_store
from tests.incluster import CLIENT

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
SERVER_IMAGE = f"modeldeploy/modelserver:{VERSION}"
RELEASE_NS = "modeldeploy-system"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]

#: what both in-pod request loops share: one POST on a keep-alive connection, reconnecting when
#: the server answers ``Connection: close`` (draining); an exception leaves the connection dropped
CLIENT_ASK = r'''
import http.client, json, os, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = json.dumps({"instances": [[1.0, 2.0]]}).encode()
conn = None
def ask():
    global conn
    try:
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
        conn.request("POST", u.path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
    except Exception:
        conn = None
        raise
    if (r.getheader("Connection") or "").lower() == "close":
        conn.close()
        conn = None
    return r.status, data
'''

LOAD_CLIENT = CLIENT_ASK + r'''
counts, failures, n = {}, [], 0
last_old, first_new, deadline = time.time(), None, time.time() + 240
print("started", flush=True)
while time.time() < deadline:
    try:
        status, data = ask()
        if status != 200:
            failures.append(f"{status} {data[:200]!r}")
            continue
        y = json.loads(data)["predictions"][0][0]
        counts[str(y)] = counts.get(str(y), 0) + 1
        if y == 1.0:
            last_old = time.time()
        elif first_new is None:
            first_new = time.time()
    except Exception as e:  # a keep-alive client does not retry a POST: every error counts
        failures.append(repr(e))
    n += 1
    if first_new is not None and time.time() - last_old > 10:
        break
    time.sleep(0.01)
print(json.dumps({"requests": n, "counts": counts, "failed": len(failures), "failures": failures[:10]}), flush=True)
'''


def kubectl(cluster, *args, check=True, timeout=300, input=None):
    done = cluster.kubectl_run(*args, check=False, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def diagnose(cluster, ns: str) -> str:
    parts = []
    for args in (("-n", ns, "get", "mdep,deploy,pods,svc", "-o", "wide"), ("-n", ns, "describe", "pods"),
                 ("-n", RELEASE_NS, "logs", "deploy/modeldeploy", "--tail=60")):
        parts.append(kubectl(cluster, *args, check=False).stdout)
    return "\n".join(parts)


def wait_ready(cluster, ns: str, name: str, timeout: int = 420) -> None:
    done = kubectl(cluster, "-n", ns, "wait", f"mdep/{name}", "--for=condition=Ready", f"--timeout={timeout}s",
                   check=False, timeout=timeout + 30)
    if done.returncode != 0:
        raise AssertionError(f"{name} not Ready: {done.stderr}\n{diagnose(cluster, ns)}")


def mdep_status(cluster, ns: str, name: str) -> dict:
    """The resource's status; empty until the operator has first written it."""
    return json.loads(kubectl(cluster, "-n", ns, "get", f"mdep/{name}", "-o", "json").stdout).get("status", {})


def run_pod(cluster, ns: str, name: str, args: list[str], timeout: int = 300, wait: bool = True) -> str:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": SERVER_IMAGE, "command": ["python3", *args],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    if not wait:
        return ""
    return pod_result(cluster, ns, name, timeout)


def pod_result(cluster, ns: str, name: str, timeout: int = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = kubectl(cluster, "-n", ns, "get", f"pod/{name}", "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            logs = kubectl(cluster, "-n", ns, "logs", f"pod/{name}").stdout
            assert phase == "Succeeded", logs
            return logs
        time.sleep(1)
    raise AssertionError(f"pod {name} did not finish:\n{diagnose(cluster, ns)}")


@pytest.fixture(scope="module")
def installed(kind_cluster):
    """Both images built and loaded, the CRD applied, and the chart installed (or upgraded)."""
    done = subprocess.run(["make", "-C", str(ROOT), "images"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kubectl(kind_cluster, "apply", "--server-side", "-f", str(ROOT / "crds"))
    helm = str(ROOT / ".tools" / "bin" / "helm")
    done = subprocess.run(
        [helm, "upgrade", "--install", "modeldeploy", str(ROOT / "charts" / "modeldeploy"), "--namespace", RELEASE_NS,
         "--create-namespace", "--kube-context", kind_cluster.context, "--set", "resyncSeconds=10", "--wait", "--timeout", "5m"],
        capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stderr
    # a new image under the same tag: restart so the operator runs the code just built
    kubectl(kind_cluster, "-n", RELEASE_NS, "rollout", "restart", "deployment/modeldeploy")
    kubectl(kind_cluster, "-n", RELEASE_NS, "rollout", "status", "deployment/modeldeploy", "--timeout=180s")
    return kind_cluster


@pytest.fixture(scope="module")
def ns(installed):
    name = f"e2e-md-{uuid.uuid4().hex[:6]}"
    kubectl(installed, "create", "namespace", name)
    yield name
    kubectl(installed, "delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from modelserver import demo

    path = demo.build(tmp_path_factory.mktemp("demo") / "iris")
    return path, models.in_process(path / "1", features=np.array(ROWS, np.float32))["probabilities"]


def test_demo_example_serves_v1_and_v2_from_host_and_cluster(installed, ns, reference):
    cluster = installed
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "iris-demo.yaml"))
    wait_ready(cluster, ns, "iris")

    table = kubectl(cluster, "-n", ns, "get", "mdep").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "PROTOCOL", "URL", "AGE"]
    url = f"http://iris.{ns}.svc.cluster.local/v1/models/iris:predict"
    assert table[1].split()[:5] == ["iris", "True", "2/2", "v1", url]

    status = mdep_status(cluster, ns, "iris")
    assert status["url"] == url and status["readyReplicas"] == 2
    assert status["model"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]

    _, expected = reference
    with cluster.port_forward(ns, "svc/iris", 80) as port:
        base = f"http://127.0.0.1:{port}"
        v1 = requests.post(f"{base}/v1/models/iris:predict", json={"instances": ROWS}, timeout=30)
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(v1.json()["predictions"], expected, rtol=1e-5)
        body = {"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
        v2 = requests.post(f"{base}/v2/models/iris/infer", json=body, timeout=30)
        assert v2.status_code == 200, v2.text
        np.testing.assert_allclose(np.reshape(v2.json()["outputs"][0]["data"], (2, 3)), expected, rtol=1e-5)

    out = run_pod(cluster, ns, "client", ["-c", CLIENT, status["url"], json.dumps({"instances": ROWS})])
    np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1])["predictions"], expected, rtol=1e-5)


GRPC_CLIENT = """
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(sys.argv[1]))
print(health_pb2.HealthCheckResponse.ServingStatus.Name(stub.Check(health_pb2.HealthCheckRequest(service="iris"), timeout=30).status))
"""


def test_grpc_through_the_service_with_a_grpc_readiness_probe(installed, ns, reference):
    """The demo model with the kubelet probing gRPC health: Ready, then tritonclient.grpc through a
    port-forward to the Service's gRPC port, and the health service from a pod in the cluster."""
    import tritonclient.grpc as grpcclient

    cluster = installed
    mdep = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "iris-grpc"},
            "spec": {"readinessProbe": "grpc", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}}}
    kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(mdep))
    # While the model loads, the pod runs but its gRPC health says NOT_SERVING: the kubelet keeps it
    # out of the Service (its endpoint not ready) until the model is loaded.
    seen_held_out = False
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(cluster, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/instance=iris-grpc",
                                  "-o", "json").stdout)["items"]
        statuses = [c for pod in pods for c in pod.get("status", {}).get("containerStatuses", [])
                    if c["name"] == "modelserver"]
        if statuses and statuses[0].get("ready"):
            break
        if statuses and "running" in statuses[0].get("state", {}):
            slices = json.loads(kubectl(cluster, "-n", ns, "get", "endpointslices", "-l",
                                        "kubernetes.io/service-name=iris-grpc", "-o", "json").stdout)["items"]
            endpoints = [e for sl in slices for e in sl.get("endpoints") or []]
            if endpoints and not any(e.get("conditions", {}).get("ready") for e in endpoints):
                seen_held_out = True
        time.sleep(0.3)
    assert seen_held_out, "never saw the pod running and held out of the Service while its model loaded"
    wait_ready(cluster, ns, "iris-grpc")
    dep = json.loads(kubectl(cluster, "-n", ns, "get", "deployment/iris-grpc", "-o", "json").stdout)
    probe = dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["grpc"] == {"port": 8081, "service": ""}
    status = mdep_status(cluster, ns, "iris-grpc")
    assert status["grpcAddress"] == f"iris-grpc.{ns}.svc.cluster.local:8081"

    _, expected = reference
    with cluster.port_forward(ns, "svc/iris-grpc", 8081) as port:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready() and client.is_model_ready("iris-grpc")
        x = grpcclient.InferInput("features", [2, 4], "FP32")
        x.set_data_from_numpy(np.array(ROWS, np.float32))
        np.testing.assert_allclose(client.infer("iris-grpc", [x]).as_numpy("probabilities"), expected, rtol=1e-5)

    out = run_pod(cluster, ns, "grpc-client", ["-c", GRPC_CLIENT.replace('"iris"', '"iris-grpc"'),
                                               status["grpcAddress"]])
    assert out.strip().splitlines()[-1] == "SERVING"
    kubectl(cluster, "-n", ns, "delete", "mdep/iris-grpc", "--wait=false")


def _archive(src: Path, dest: Path, top: str) -> Path:
    with tarfile.open(dest, "w:gz") as t:
        t.add(src, arcname=top)
    return dest


@pytest.fixture(scope="module")
def model_files(installed, ns, reference, tmp_path_factory):
    """The model archives the tests fetch over HTTP, in the ConfigMap examples/model-files.yaml serves."""
    cluster = installed
    demo_path, _ = reference
    tmp = tmp_path_factory.mktemp("model-files")
    files = [
        _archive(demo_path, tmp / "iris.tar.gz", "iris"),
        _archive(models.scaled(tmp / "v1" / "1", 1.0), tmp / "scaled-v1.tar.gz", "scaled/1"),
        _archive(models.scaled(tmp / "v2" / "2", 2.0), tmp / "scaled-v2.tar.gz", "scaled/2"),
        _archive(models.needs_positive(tmp / "broken" / "1"), tmp / "broken.tar.gz", "broken/1"),
        _archive(hf_models.make_tiny_llama(tmp / "tiny-llama"), tmp / "tiny-llama.tar.gz", "tiny-llama"),
    ]
    kubectl(cluster, "-n", ns, "create", "configmap", "model-files", *[f"--from-file={f}" for f in files])
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "model-files.yaml"))
    kubectl(cluster, "-n", ns, "rollout", "status", "deployment/model-files", "--timeout=180s")


def test_http_model_and_a_rolling_update_under_load(installed, ns, reference, model_files):
    cluster = installed
    _, expected = reference

    # The http example as written: fetched by the init container, served over V2 first.
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "iris-http.yaml"))
    wait_ready(cluster, ns, "iris-http")
    assert mdep_status(cluster, ns, "iris-http")["url"].endswith("/v2/models/iris-http/infer")
    with cluster.port_forward(ns, "svc/iris-http", 80) as port:
        r = requests.post(f"http://127.0.0.1:{port}/v1/models/iris-http:predict", json={"instances": ROWS}, timeout=30)
        np.testing.assert_allclose(r.json()["predictions"], expected, rtol=1e-5)

    manifest = {
        "apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "scaled"},
        # two server processes per pod: the rolling update drains a supervising parent and its workers
        "spec": {"model": {"uri": "http://model-files/scaled-v1.tar.gz"}, "replicas": 2, "workers": 2},
    }
    kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(manifest))
    wait_ready(cluster, ns, "scaled")
    url = mdep_status(cluster, ns, "scaled")["url"]

    run_pod(cluster, ns, "load", ["-c", LOAD_CLIENT, url], wait=False)
    deadline = time.monotonic() + 120
    while "started" not in kubectl(cluster, "-n", ns, "logs", "pod/load", check=False).stdout:
        assert time.monotonic() < deadline, diagnose(cluster, ns)
        time.sleep(1)
    time.sleep(3)
    kubectl(cluster, "-n", ns, "patch", "mdep/scaled", "--type=merge", "-p",
            json.dumps({"spec": {"model": {"uri": "http://model-files/scaled-v2.tar.gz"}}}))
    result = json.loads(pod_result(cluster, ns, "load", timeout=420).strip().splitlines()[-1])
    assert result["failed"] == 0, result
    assert result["counts"].get("1.0", 0) > 0 and result["counts"].get("2.0", 0) > 0, result
    wait_ready(cluster, ns, "scaled")


def test_huggingface_model_over_openai_from_host_and_cluster(installed, ns, model_files):
    """examples/tiny-llm.yaml as written: a Hugging Face Llama fetched over HTTP, driven with the openai SDK."""
    cluster = installed
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "tiny-llm.yaml"))
    wait_ready(cluster, ns, "tiny-llm")

    row = next(line.split() for line in kubectl(cluster, "-n", ns, "get", "mdep").stdout.splitlines()
               if line.startswith("tiny-llm "))
    assert row[1:4] == ["True", "1/1", "openai"], row
    status = mdep_status(cluster, ns, "tiny-llm")
    assert status["url"] == f"http://tiny-llm.{ns}.svc.cluster.local/openai/v1"
    # loading and warming the model happened while liveness answered: no restart on the way
    pods = json.loads(kubectl(cluster, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/instance=tiny-llm",
                              "-o", "json").stdout)["items"]
    assert [c["restartCount"] for p in pods for c in p["status"]["containerStatuses"]] == [0], diagnose(cluster, ns)

    prompt = "Once upon a time"
    with cluster.port_forward(ns, "svc/tiny-llm", 80) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/openai/v1", api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["tiny-llm"]

        chat = client.chat.completions.create(
            model="tiny-llm", messages=[{"role": "user", "content": "Tell me a story about the sea."}],
            max_tokens=12, temperature=0,
        )
        (choice,) = chat.choices
        assert choice.message.role == "assistant" and choice.message.content
        assert choice.finish_reason in ("stop", "length")
        assert chat.usage is not None and chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 12
        assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

        whole = client.completions.create(model="tiny-llm", prompt=prompt, max_tokens=12, temperature=0)
        assert whole.choices[0].text and whole.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.completions.create(model="tiny-llm", prompt=prompt, max_tokens=12, temperature=0, stream=True))
        assert len(chunks) > 1
        assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text

    body = {"model": "tiny-llm", "prompt": prompt, "max_tokens": 12, "temperature": 0}
    out = run_pod(cluster, ns, "llm-client", ["-c", CLIENT, status["url"] + "/completions", json.dumps(body)])
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"] == whole.choices[0].text


def wait_reason(cluster, ns: str, name: str, reason: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conds = mdep_status(cluster, ns, name).get("conditions", []) if name in kubectl(cluster, "-n", ns, "get", "mdep", "-o", "name").stdout else []
        ready = next((c for c in conds if c["type"] == "Ready"), None)
        if ready and ready["reason"] == reason:
            return ready
        time.sleep(2)
    raise AssertionError(f"{name} never reported {reason}:\n{diagnose(cluster, ns)}")


def test_status_says_why_a_model_is_not_ready(installed, ns, model_files):
    cluster = installed
    for name, spec in (
        ("no-image", {"image": "modeldeploy/no-such-image:1", "replicas": 1}),
        ("broken", {"model": {"uri": "http://model-files/broken.tar.gz"}, "replicas": 1}),
    ):
        body = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}
        kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(body))
    try:
        pull = wait_reason(cluster, ns, "no-image", "ImagePullFailed")
        assert pull["status"] == "False" and "no-such-image" in pull["message"]
        broken = wait_reason(cluster, ns, "broken", "ModelLoadFailed")
        assert "x must be > 0" in broken["message"]
    finally:
        for name in ("no-image", "broken"):
            kubectl(cluster, "-n", ns, "delete", f"mdep/{name}", "--wait=false")


@pytest.fixture(scope="module")
def seaweedfs(installed, ns, tmp_path_factory):
    """examples/seaweedfs.yaml running in the namespace, its image built from the cached ``weed``."""
    cluster = installed
    context = tmp_path_factory.mktemp("seaweedfs-image")
    shutil.copy2(s3_store.weed_binary(), context / "weed")
    shutil.copy2(ROOT / "tests" / "e2e" / "Dockerfile.seaweedfs", context / "Dockerfile")
    cluster.build_image(context / "Dockerfile", "modeldeploy/seaweedfs:dev", context)
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "seaweedfs.yaml"))
    kubectl(cluster, "-n", ns, "rollout", "status", "deployment/seaweedfs", "--timeout=180s")
    secret = json.loads(kubectl(cluster, "-n", ns, "get", "secret/s3-creds", "-o", "json").stdout)["data"]
    creds = {k: base64.b64decode(v).decode() for k, v in secret.items()}
    with cluster.port_forward(ns, "svc/seaweedfs", 8333) as port:
        import boto3

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=creds["AWS_REGION"],
                              aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
        deadline = time.monotonic() + 60
        while True:  # the gateway answers once its filer is up
            try:
                client.head_bucket(Bucket="models")
                break
            except Exception:
                assert time.monotonic() < deadline, diagnose(cluster, ns)
                time.sleep(1)
        yield client


def test_s3_models_become_ready_and_answer_and_a_wrong_key_says_so(installed, ns, reference, seaweedfs):
    cluster = installed
    demo_path, expected = reference
    for path in sorted(p for p in demo_path.rglob("*") if p.is_file()):
        seaweedfs.upload_file(str(path), "models", f"iris/{path.relative_to(demo_path).as_posix()}")
    churn = keras_models.two_inputs(Path(tempfile.mkdtemp()) / "churn.keras", seed=5)
    seaweedfs.upload_file(str(churn), "models", "keras/churn.keras")

    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "iris-s3.yaml"))
    keras_spec = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "churn"},
                  "spec": {"model": {"uri": "s3://models/keras/churn.keras", "format": "keras",
                                     "storage": {"secretRef": {"name": "s3-creds"}}}, "protocol": "v2"}}
    missing = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "missing"},
               "spec": {"model": {"uri": "s3://models/teams/nobody/model.keras",
                                  "storage": {"secretRef": {"name": "s3-creds"}}}}}
    for body in (keras_spec, missing):
        kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(body))
    try:
        wait_ready(cluster, ns, "iris-s3")
        wait_ready(cluster, ns, "churn")
        with cluster.port_forward(ns, "svc/iris-s3", 80) as port:
            r = requests.post(f"http://127.0.0.1:{port}/v1/models/iris-s3:predict", json={"instances": ROWS}, timeout=30)
            np.testing.assert_allclose(r.json()["predictions"], expected, rtol=1e-5)
        age, feats = np.array([[30.0]], np.float32), np.array([[0.2, 0.4, 0.6]], np.float32)
        body = {"inputs": [{"name": "age", "shape": [1, 1], "datatype": "FP32", "data": [30.0]},
                           {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [0.2, 0.4, 0.6]}]}
        with cluster.port_forward(ns, "svc/churn", 80) as port:
            r = requests.post(f"http://127.0.0.1:{port}/v2/models/churn/infer", json=body, timeout=30)
            outs = {o["name"]: o["data"] for o in r.json()["outputs"]}
            np.testing.assert_allclose(outs["proba"], keras_models.predict(churn, age, feats)[1][0], atol=1e-5)
        failed = wait_reason(cluster, ns, "missing", "FetchFailed")
        assert "s3://models/teams/nobody/model.keras" in failed["message"] and "NoSuchKey" in failed["message"]
        # the credentials went to the fetch container only
        pod = json.loads(kubectl(cluster, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/instance=iris-s3",
                                 "-o", "json").stdout)["items"][0]["spec"]
        assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert "envFrom" not in pod["containers"][0]
    finally:
        kubectl(cluster, "-n", ns, "delete", "mdep/missing", "--wait=false", check=False)


def wait_status(cluster, ns: str, name: str, what: str, probe, timeout: float = 120) -> dict:
    """The resource's status once ``probe(status)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = mdep_status(cluster, ns, name)
        if probe(st):
            return st
        time.sleep(2)
    raise AssertionError(f"{name}: {what} never seen in status {st}:\n{diagnose(cluster, ns)}")


def test_a_repository_of_many_models_answers_for_each_through_the_service(installed, ns, seaweedfs, tmp_path):
    """examples/model-repository.yaml as written: two dozen Keras models in S3, each loaded on its first
    request within a 5 MiB budget, answered by name through the Service; the status counts them."""
    cluster = installed
    count = 24
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "model-repository.py"), str(tmp_path / "customers"),
                           "--models", str(count)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    files = sorted((tmp_path / "customers").glob("*.keras"))
    assert len(files) == count
    for path in files:
        seaweedfs.upload_file(str(path), "models", f"customers/{path.name}")
    kubectl(cluster, "-n", ns, "apply", "-f", str(ROOT / "examples" / "model-repository.yaml"))
    try:
        wait_ready(cluster, ns, "customers")
        st = wait_status(cluster, ns, "customers", f"{count} models",
                         lambda st: (st.get("repository") or {}).get("models") == count)
        assert st["url"] == f"http://customers.{ns}.svc.cluster.local/v2/models"
        pod = json.loads(kubectl(cluster, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/instance=customers",
                                 "-o", "json").stdout)["items"][0]["spec"]
        assert "initContainers" not in pod  # the server reads each model from the bucket as it loads
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]

        rng = np.random.default_rng(3)
        asked = {f"customer-{i:03d}": files[i - 1] for i in range(1, 21)}
        tenure = rng.uniform(0, 60, (2, 1)).astype(np.float32)
        usage = rng.uniform(0, 1, (2, 3)).astype(np.float32)

        def ask(port: int, name: str) -> np.ndarray:
            client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
            inputs = [httpclient.InferInput("tenure", [2, 1], "FP32"), httpclient.InferInput("usage", [2, 3], "FP32")]
            inputs[0].set_data_from_numpy(tenure)
            inputs[1].set_data_from_numpy(usage)
            return client.infer(name, inputs).as_numpy("churn")

        with cluster.port_forward(ns, "svc/customers", 80) as port:
            client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
            index = {m["name"]: m["state"] for m in client.get_model_repository_index()}
            assert len(index) == count and set(index.values()) == {"UNAVAILABLE"}  # on demand: none loaded yet
            with cf.ThreadPoolExecutor(4) as pool:
                answers = dict(zip(asked, pool.map(lambda n: ask(port, n), asked)))
            for name, path in asked.items():
                np.testing.assert_allclose(answers[name], keras_models.predict(path, tenure, usage)[0], atol=1e-5)
            r = requests.post(f"http://127.0.0.1:{port}/v1/models/customer-024:predict",
                              json={"instances": [{"tenure": [12.0], "usage": [0.2, 0.5, 0.9]}]}, timeout=60)
            expected = keras_models.predict(files[23], np.array([[12.0]], np.float32),
                                            np.array([[0.2, 0.5, 0.9]], np.float32))[0]
            np.testing.assert_allclose(r.json()["predictions"], expected.tolist(), atol=1e-5)
            missing = requests.post(f"http://127.0.0.1:{port}/v2/models/customer-999/infer", json={"inputs": []}, timeout=30)
            assert missing.status_code == 404 and "customer-999" in missing.json()["error"]
            loaded = sorted(m["name"] for m in client.get_model_repository_index() if m["state"] == "READY")
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        # 21 models asked for, a 5 MiB budget (each is counted at about 0.5 MB): the least recently
        # used were unloaded for the later ones
        assert 1 <= len(loaded) < 15 and "customer-024" in loaded, loaded
        counted = next(float(ln.split()[1]) for ln in metrics.splitlines() if ln.startswith("modelserver_loaded_model_bytes "))
        assert counted <= 5 * 2**20
        evicted = [ln for ln in metrics.splitlines() if ln.startswith("modelserver_model_evictions_total{")]
        assert evicted, metrics[-3000:]
        st = wait_status(cluster, ns, "customers", f"{len(loaded)} loaded",
                         lambda st: (st.get("repository") or {}).get("loaded") == len(loaded))
        assert st["repository"]["summary"] == f"{len(loaded)}/{count} loaded"
        wide = kubectl(cluster, "-n", ns, "get", "mdep/customers", "-o", "wide").stdout
        assert f"{len(loaded)}/{count} loaded" in wide, wide
    finally:
        kubectl(cluster, "-n", ns, "delete", "mdep/customers", "--wait=false", check=False)


CHAOS_CLIENT = CLIENT_ASK + r'''
n, failures = 0, []
print("started", flush=True)
while not os.path.exists("/tmp/stop") and n < 200000:
    try:
        status, data = ask()
        if status != 200:
            failures.append([time.time(), f"{status} {data[:120]!r}"])
    except Exception as e:  # a keep-alive client does not retry a POST: every error counts
        failures.append([time.time(), repr(e)[:160]])
    n += 1
    time.sleep(0.005)
print(json.dumps({"requests": n, "failures": failures}), flush=True)
'''


def _pods(cluster, ns: str, name: str) -> list[str]:
    out = kubectl(cluster, "-n", ns, "get", "pods", "-l", f"app.kubernetes.io/instance={name}",
                  "--field-selector=status.phase=Running", "-o", "name").stdout.split()
    return [p.removeprefix("pod/") for p in out]


def _children(cluster, ns: str, kind: str) -> list[str]:
    return kubectl(cluster, "-n", ns, "get", kind, "-l", "app.kubernetes.io/managed-by=modeldeploy",
                   "-o", "name").stdout.split()


def test_two_replicas_keep_answering_through_deletion_eviction_and_an_operator_killed_mid_rollout(
    installed, ns, model_files
):
    """Under a keep-alive request loop from a pod: (a) a pod deleted, (b) a pod evicted through the
    Eviction API as a node drain does, within the PodDisruptionBudget, (c) the operator's pod killed
    at once after a rollout starts. Failed requests are counted per phase; afterwards there is one
    Deployment and one Service for the resource, nothing duplicated or orphaned."""
    cluster = installed
    manifest = {
        "apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "chaos"},
        "spec": {"model": {"uri": "http://model-files/scaled-v1.tar.gz"}, "replicas": 2,
                 "disruptionBudget": {"minAvailable": 1}},
    }
    kubectl(cluster, "-n", ns, "apply", "-f", "-", input=json.dumps(manifest))
    wait_ready(cluster, ns, "chaos")
    url = mdep_status(cluster, ns, "chaos")["url"]
    run_pod(cluster, ns, "chaos-load", ["-c", CHAOS_CLIENT, url], wait=False)
    deadline = time.monotonic() + 120
    while "started" not in kubectl(cluster, "-n", ns, "logs", "pod/chaos-load", check=False).stdout:
        assert time.monotonic() < deadline, diagnose(cluster, ns)
        time.sleep(1)
    phases: list[tuple[str, float, float]] = []

    def settle(name: str, start: float) -> None:
        wait_ready(cluster, ns, "chaos")
        deadline = time.monotonic() + 180
        while len(_pods(cluster, ns, "chaos")) < 2:
            assert time.monotonic() < deadline, diagnose(cluster, ns)
            time.sleep(1)
        time.sleep(5)
        phases.append((name, start, time.time()))

    time.sleep(5)
    start = time.time()
    kubectl(cluster, "-n", ns, "delete", "pod", _pods(cluster, ns, "chaos")[0], "--wait=true", "--timeout=120s")
    settle("pod deleted", start)

    start = time.time()
    victim = _pods(cluster, ns, "chaos")[0]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim, "namespace": ns}}
    kubectl(cluster, "create", "--raw", f"/api/v1/namespaces/{ns}/pods/{victim}/eviction", "-f", "-",
            input=json.dumps(eviction))
    settle("pod evicted", start)

    start = time.time()
    kubectl(cluster, "-n", ns, "patch", "mdep/chaos", "--type=merge", "-p",
            json.dumps({"spec": {"model": {"uri": "http://model-files/scaled-v2.tar.gz"}}}))
    kubectl(cluster, "-n", RELEASE_NS, "delete", "pod", "-l", "app.kubernetes.io/name=modeldeploy-operator",
            "--grace-period=0", "--force", "--wait=false")
    kubectl(cluster, "-n", RELEASE_NS, "rollout", "status", "deployment/modeldeploy", "--timeout=180s")
    deadline = time.monotonic() + 300
    while mdep_status(cluster, ns, "chaos").get("model", {}).get("versions") != ["2"]:
        assert time.monotonic() < deadline, diagnose(cluster, ns)
        time.sleep(2)
    settle("operator killed mid-rollout", start)

    kubectl(cluster, "-n", ns, "exec", "chaos-load", "--", "touch", "/tmp/stop")
    result = json.loads(pod_result(cluster, ns, "chaos-load", timeout=120).strip().splitlines()[-1])
    failed = {name: [f for f in result["failures"] if a <= f[0] <= b] for name, a, b in phases}
    print(f"\nchaos: {result['requests']} requests; failed per phase: "
          + ", ".join(f"{k}: {len(v)}" for k, v in failed.items()))
    assert not failed["pod evicted"] and not failed["operator killed mid-rollout"], failed
    assert len(failed["pod deleted"]) <= 2, failed  # at most what was in flight on the deleted pod
    assert len(result["failures"]) == sum(len(v) for v in failed.values()), result["failures"][:5]
    assert [c for c in _children(cluster, ns, "deploy") if "chaos" in c] == ["deployment.apps/chaos"]
    assert [c for c in _children(cluster, ns, "svc") if "chaos" in c] == ["service/chaos"]
    assert len([c for c in _children(cluster, ns, "pdb") if "chaos" in c]) == 1


def test_delete_leaves_nothing(installed, ns):
    cluster = installed
    assert kubectl(cluster, "-n", ns, "get", "mdep", "-o", "name").stdout.split(), "nothing to delete"
    kubectl(cluster, "-n", ns, "delete", "mdep", "--all", "--wait=true", "--timeout=120s")
    selector = "app.kubernetes.io/managed-by=modeldeploy"
    deadline = time.monotonic() + 180
    while True:
        left = kubectl(cluster, "-n", ns, "get", "deploy,rs,svc,pods,hpa,pdb", "-l", selector, "-o", "name").stdout.split()
        if not left:
            break
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(2)
