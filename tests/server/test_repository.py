"""A model repository (``--model-repository``): many models in one server, loaded all at start or
on demand within a memory budget, with the Open Inference Protocol's repository extension, called
by ``tritonclient.http`` and ``tritonclient.grpc`` unchanged."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests import hf_models, models

MB = 1024 * 1024


def predict(server, model: str, x: float = 1.0, timeout: float = 60) -> requests.Response:
    return requests.post(server.url(f"/v1/models/{model}:predict"), json={"instances": [[x, 2.0]]}, timeout=timeout)


def predict_slow(server) -> requests.Response:
    """The slow model (two seconds a call, y = x + 1)."""
    return requests.post(server.url("/v1/models/slow:predict"), json={"instances": [[1.0]]}, timeout=60)


def index(server, **body) -> dict[str, dict]:
    r = requests.post(server.url("/v2/repository/index"), json=body or None, timeout=30)
    assert r.status_code == 200, r.text
    return {row["name"]: row for row in r.json()}


def metric(server, name: str, **labels: str) -> float:
    text = requests.get(server.url("/metrics"), timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


def rss_mb(server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# -- load policy all --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo_all(tmp_path_factory, start_server):
    root = tmp_path_factory.mktemp("repository-all")
    models.scaled(root / "double" / "1", 2.0)
    models.versioned(root / "scaled")  # versions 1 (y = x) and 2 (y = 2x)
    models.scaled(root / "triple", 3.0)
    (root / "empty").mkdir()
    (root / "empty" / "README").write_text("no model here")
    return start_server(None, "--model-repository", str(root)), root


def test_every_model_is_served_by_name_and_a_broken_one_fails_only_itself(repo_all):
    server, _ = repo_all
    assert requests.get(server.url("/v2/health/ready"), timeout=5).status_code == 200
    assert predict(server, "double", 3.0).json() == {"predictions": [[6.0, 4.0]]}
    assert predict(server, "triple", 1.0).json() == {"predictions": [[3.0, 6.0]]}
    r = requests.post(server.url("/v1/models/scaled/versions/1:predict"), json={"instances": [[5.0, 1.0]]}, timeout=30)
    assert r.json() == {"predictions": [[5.0, 1.0]]}
    r = requests.post(server.url("/v2/models/scaled/infer"), json={
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 1.0]}]}, timeout=30)
    assert r.json()["outputs"][0]["data"] == [2.0, 2.0]
    rows = index(server)
    assert set(rows) == {"double", "scaled", "triple", "empty"}
    assert rows["double"]["state"] == "READY" and rows["double"]["reason"] == ""
    assert rows["empty"]["state"] == "UNAVAILABLE" and "no model in" in rows["empty"]["reason"]
    broken = predict(server, "empty")
    assert broken.status_code == 503 and "no model in" in broken.json()["error"]
    assert requests.get(server.url("/v2/models/empty/ready"), timeout=5).status_code == 503
    assert requests.get(server.url("/v2/models/double/ready"), timeout=5).status_code == 200
    assert set(index(server, ready=True)) == {"double", "scaled", "triple"}
    states = {state: metric(server, "modelserver_repository_models", state=state)
              for state in ("ready", "loading", "failed", "unloaded")}
    assert states == {"ready": 3, "loading": 0, "failed": 1, "unloaded": 0}
    unknown = predict(server, "nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    # the paths that name no model cannot choose one among several
    seed = requests.post(server.url("/predict"), json={"instances": [[1.0, 2.0]]}, timeout=30)
    assert seed.status_code == 400 and "name one" in seed.json()["error"]


def test_tritonclient_http_index_unload_and_load(repo_all):
    server, _ = repo_all
    client = httpclient.InferenceServerClient(server.address)
    listed = {(m["name"], m.get("version")): m["state"] for m in client.get_model_repository_index()}
    assert listed[("scaled", "1")] == listed[("scaled", "2")] == "READY"
    assert client.is_model_ready("triple")
    client.unload_model("triple")
    assert not client.is_model_ready("triple")
    r = predict(server, "triple")
    assert r.status_code == 503 and "unloaded" in r.json()["error"]  # policy all: a request does not load it
    assert index(server)["triple"]["state"] == "UNAVAILABLE"
    client.load_model("triple")
    assert client.is_model_ready("triple")
    assert predict(server, "triple").json() == {"predictions": [[3.0, 6.0]]}
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.load_model("nope")
    with pytest.raises(InferenceServerException, match="could not be loaded: no model in"):
        client.load_model("empty")
    with pytest.raises(InferenceServerException, match="'config' is not served"):
        client.load_model("triple", config='{"backend": "x"}')
    client.unload_model("double", unload_dependents=True)
    client.load_model("double")


def test_repository_calls_need_the_api_key(tmp_path, start_server):
    models.scaled(tmp_path / "one" / "1", 1.0)
    server = start_server(None, "--model-repository", str(tmp_path), "--api-keys", "k1")
    for path in ("/v2/repository/index", "/v2/repository/models/one/unload", "/v2/repository/models/one/load"):
        assert requests.post(server.url(path), timeout=10).status_code == 401
        assert requests.post(server.url(path), headers={"Authorization": "Bearer k1"}, timeout=30).status_code == 200


def test_a_server_of_one_model_lists_it_and_refuses_load_and_unload(iris):
    rows = requests.post(iris.url("/v2/repository/index"), timeout=10).json()
    assert rows == [{"name": "iris", "version": "1", "state": "READY", "reason": ""}]
    r = requests.post(iris.url("/v2/repository/models/iris/unload"), timeout=10)
    assert r.status_code == 400 and "--model-repository" in r.json()["error"]


def test_bad_repository_bodies_are_refused(repo_all):
    server, _ = repo_all
    cases = [
        ("/v2/repository/index", {"ready": "yes"}, "ready: expected true or false"),
        ("/v2/repository/index", {"filter": 1}, "'filter' is not a field here"),
        ("/v2/repository/index", [1], "expected a JSON object"),
        ("/v2/repository/models/double/unload", {"parameters": {"unload_dependents": 1}}, "expected true or false"),
        ("/v2/repository/models/double/unload", {"parameters": {"x": True}}, "'x' is not served"),
    ]
    for path, body, message in cases:
        r = requests.post(server.url(path), json=body, timeout=10)
        assert r.status_code == 400 and message in r.json()["error"], (path, body, r.text)


# -- on demand, within a memory budget ---------------------------------------------------------------
@pytest.fixture(scope="module")
def on_demand(tmp_path_factory, start_server):
    """Eight models of 4 MB of weights each and a slow one, with a budget of about three."""
    root = tmp_path_factory.mktemp("repository-on-demand")
    for i in range(8):
        models.weighted(root / f"m{i}" / "1", 4, factor=float(i + 1))
    models.slow(root / "slow" / "1", 2.0)
    budget = 30 * MB
    server = start_server(None, "--model-repository", str(root), "--load-policy", "on-demand",
                          "--max-loaded-bytes", str(budget), "--timeout-seconds", "20")
    return server, root, budget


def loaded(server) -> list[str]:
    return sorted(n for n, row in index(server).items() if row["state"] == "READY")


def test_on_demand_loads_on_first_request_and_keeps_the_most_recently_used_within_the_budget(on_demand):
    server, _, budget = on_demand
    assert loaded(server) == []  # nothing loaded at start, and the server is ready
    assert metric(server, "modelserver_repository_models", state="unloaded") == len(index(server))
    assert requests.get(server.url("/v2/health/ready"), timeout=5).status_code == 200
    used: list[str] = []
    for name in ["m0", "m1", "m2", "m3", "m1", "m4", "m5", "m1", "m6", "m0", "m7", "m1"]:
        i = int(name[1:])
        assert predict(server, name, 2.0).json() == {"predictions": [[2.0 * (i + 1), 2.0 * (i + 1)]]}
        used = [n for n in used if n != name] + [name]
        now = loaded(server)
        # what stays loaded is always the most recently used ones, whatever each one measured
        assert now and now == sorted(used[-len(now):]), (now, used)
        assert metric(server, "modelserver_loaded_model_bytes") <= budget
        assert metric(server, "modelserver_repository_models", state="ready") == len(now)
    assert metric(server, "modelserver_model_evictions_total", model="m2") >= 1
    assert metric(server, "modelserver_model_loads_total", model="m1", outcome="loaded") == 1  # kept: used often
    assert metric(server, "modelserver_model_load_seconds_count", model="m7") == 1


def test_concurrent_requests_for_a_model_share_one_load(on_demand):
    server, _, _ = on_demand
    requests.post(server.url("/v2/repository/models/m6/unload"), timeout=10)
    before = metric(server, "modelserver_model_loads_total", model="m6", outcome="loaded")
    waits = metric(server, "modelserver_load_waits_total", model="m6")
    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: predict(server, "m6"), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert metric(server, "modelserver_model_loads_total", model="m6", outcome="loaded") == before + 1
    assert metric(server, "modelserver_load_waits_total", model="m6") >= waits + 1


def test_a_model_with_requests_in_flight_is_not_evicted_under_them(on_demand):
    server, _, _ = on_demand
    assert predict_slow(server).status_code == 200  # loaded (and warmed: one slow call)
    with cf.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(predict_slow, server)
        time.sleep(0.5)
        others = [pool.submit(predict, server, f"m{i}") for i in (2, 3, 5)]
        assert slow.result().status_code == 200
        assert [o.result().status_code for o in others] == [200, 200, 200]


def test_unload_with_a_request_in_flight_lets_it_finish(on_demand):
    server, _, _ = on_demand
    assert predict_slow(server).status_code == 200
    with cf.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(predict_slow, server)
        time.sleep(0.5)
        r = requests.post(server.url("/v2/repository/models/slow/unload"), timeout=10)
        assert r.status_code == 200
        assert index(server)["slow"]["state"] == "UNAVAILABLE"  # out of service at once
        assert slow.result().json() == {"predictions": [[2.0]]}  # and its request finished
    time.sleep(0.2)
    assert index(server)["slow"]["reason"] == "unloaded"


def test_a_failing_model_fails_only_its_own_requests_and_loads_once_fixed(on_demand):
    server, root, _ = on_demand
    bad = root / "late"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    with cf.ThreadPoolExecutor(6) as pool:
        good = [pool.submit(predict, server, f"m{i % 3}") for i in range(12)]
        failing = [pool.submit(predict, server, "late") for _ in range(3)]
        assert [g.result().status_code for g in good] == [200] * 12
        for f in failing:
            assert f.result().status_code == 503 and "late" in f.result().json()["error"]
    assert index(server)["late"]["state"] == "UNAVAILABLE"
    assert requests.get(server.url("/v2/health/ready"), timeout=5).status_code == 200
    shutil.rmtree(bad / "1")
    models.scaled(bad / "1", 5.0)  # new files: the next request tries again
    assert predict(server, "late").json() == {"predictions": [[5.0, 10.0]]}


def test_a_model_bigger_than_the_budget_says_so(on_demand):
    server, root, _ = on_demand
    models.weighted(root / "huge" / "1", 40)
    r = requests.post(server.url("/v2/repository/models/huge/load"), timeout=30)
    assert r.status_code == 400
    assert "bigger than the memory budget" in r.json()["error"] and "--max-loaded-bytes" in r.json()["error"]
    r = predict(server, "huge")
    assert r.status_code == 503 and "bigger than the memory budget" in r.json()["error"]
    shutil.rmtree(root / "huge")


def test_tritonclient_grpc_repository_calls_and_per_model_health(on_demand):
    server, _, _ = on_demand
    target = f"127.0.0.1:{server.grpc_port}"
    with grpcclient.InferenceServerClient(target) as client:
        client.load_model("m3")
        assert client.is_model_ready("m3")
        rows = {m.name: m.state for m in client.get_model_repository_index().models}
        assert rows["m3"] == "READY"
        x = np.array([[1.0, 1.0]], dtype=np.float32)
        tensor = grpcclient.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(x)
        assert client.infer("m3", [tensor]).as_numpy("y").tolist() == [[4.0, 4.0]]
        import grpc

        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(service="m3")).status == 1  # SERVING
            client.unload_model("m3")
            assert health.Check(health_pb2.HealthCheckRequest(service="m3")).status == 2  # NOT_SERVING
        with pytest.raises(InferenceServerException, match="repository_name"):
            _index_with_repository_name(target)
        # on demand: an inference loads it again
        assert client.infer("m3", [tensor]).as_numpy("y").tolist() == [[4.0, 4.0]]


def _index_with_repository_name(target: str) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
                service_pb2.RepositoryIndexRequest(repository_name="other"))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
            raise InferenceServerException(e.details()) from None


def test_models_added_later_are_found(on_demand):
    server, root, _ = on_demand
    models.scaled(root / "added" / "1", 7.0)
    assert index(server)["added"]["state"] == "UNAVAILABLE"
    assert predict(server, "added").json() == {"predictions": [[7.0, 14.0]]}
    shutil.rmtree(root / "added")


# -- memory really comes back ---------------------------------------------------------------------------
def test_memory_comes_back_after_an_unload(tmp_path, start_server):
    models.weighted(tmp_path / "big" / "1", 64)
    models.scaled(tmp_path / "small" / "1", 1.0)
    server = start_server(None, "--model-repository", str(tmp_path), "--load-policy", "on-demand")
    assert predict(server, "small").status_code == 200  # the runtime started: the server's own base
    base = rss_mb(server)
    assert predict(server, "big").status_code == 200
    with_big = rss_mb(server)
    assert with_big - base > 50, (base, with_big)
    assert requests.post(server.url("/v2/repository/models/big/unload"), timeout=30).status_code == 200
    after = rss_mb(server)
    print(f"\nRSS: {base:.0f} MB, {with_big:.0f} MB with a 64 MB model, {after:.0f} MB after its unload")
    assert after - base < 0.25 * (with_big - base), (base, with_big, after)


# -- many kinds of models at once -------------------------------------------------------------------------
def test_v1_v2_and_embedding_requests_to_many_models_while_others_load_and_unload(tmp_path, start_server):
    for i in range(6):
        models.scaled(tmp_path / f"s{i}" / "1", float(i + 1))
    (tmp_path / "minilm").symlink_to(hf_models.minilm_dir())
    server = start_server(None, "--model-repository", str(tmp_path), "--load-policy", "on-demand",
                          "--timeout-seconds", "60")

    def v1(i: int) -> bool:
        r = predict(server, f"s{i}", 1.0)
        return r.status_code == 200 and r.json() == {"predictions": [[i + 1.0, 2.0 * (i + 1)]]}

    def v2(i: int) -> bool:
        r = requests.post(server.url(f"/v2/models/s{i}/infer"), json={
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 0.0]}]}, timeout=60)
        return r.status_code == 200 and r.json()["outputs"][0]["data"] == [i + 1.0, 0.0]

    def embed(_: int) -> bool:
        r = requests.post(server.url("/v1/embeddings"), json={"model": "minilm", "input": "hello"}, timeout=60)
        return r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384

    def churn(i: int) -> bool:  # unload and load models 0-2 while they are being asked for
        verb = "unload" if i % 2 == 0 else "load"
        r = requests.post(server.url(f"/v2/repository/models/s{i % 3}/{verb}"), timeout=60)
        return r.status_code == 200

    jobs = [(v1, i % 6) for i in range(30)] + [(v2, i % 6) for i in range(30)] + [(embed, i) for i in range(6)]
    jobs += [(churn, i) for i in range(12)]
    order = np.random.default_rng(0).permutation(len(jobs))
    with cf.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda k: (jobs[k][0].__name__, jobs[k][0](jobs[k][1])), order))
    assert [name for name, ok in results if not ok] == []
    assert requests.get(server.url("/v2/health/ready"), timeout=5).status_code == 200
