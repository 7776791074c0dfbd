"""gRPC with the clients users have: ``tritonclient.grpc`` (raw contents), the generated stub with
typed contents, the standard health client and server reflection; answers equal to HTTP's and to
the model in-process; every error code; API keys; a deadline; health turning NOT_SERVING on drain."""

from __future__ import annotations

import signal
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor, triton_to_np_dtype

from tests import models

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], np.float32)


def address(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


@pytest.fixture(scope="module")
def client(iris):
    return grpcclient.InferenceServerClient(address(iris))


@pytest.fixture(scope="module")
def stub(iris):
    return pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(iris)))


def features(x: np.ndarray) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def test_state_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert client.get_server_metadata().name == "modelserver"
    meta = client.get_model_metadata("iris")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("features", "FP32", [-1, 4])]
    assert [t.name for t in meta.outputs] == ["probabilities"] and list(meta.versions) == ["1"]


def test_infer_equals_http_and_the_model_in_process(client, iris, iris_path):
    result = client.infer("iris", [features(X)], request_id="g1")
    ref = models.in_process(iris_path / "1", features=X)["probabilities"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), ref)
    assert result.get_response().id == "g1" and result.get_response().model_name == "iris"
    http = requests.post(iris.url("/v2/models/iris/infer"), timeout=30, json={
        "inputs": [{"name": "features", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}).json()
    np.testing.assert_array_equal(np.array(http["outputs"][0]["data"], np.float32).reshape(3, 3), ref)


def test_typed_contents_and_a_named_version(stub, iris_path):
    request = pb.ModelInferRequest(model_name="iris", model_version="1")
    t = request.inputs.add(name="features", datatype="FP32", shape=[3, 4])
    t.contents.fp32_contents.extend(X.ravel().tolist())
    request.outputs.add(name="probabilities")
    answer = stub.ModelInfer(request, timeout=30)
    out = np.frombuffer(answer.raw_output_contents[0], np.float32).reshape(3, 3)
    np.testing.assert_array_equal(out, models.in_process(iris_path / "1", features=X)["probabilities"])
    assert answer.outputs[0].datatype == "FP32" and list(answer.outputs[0].shape) == [3, 3]


def test_every_datatype_raw_and_typed(multi):
    server, path = multi
    client = grpcclient.InferenceServerClient(address(server))
    values = {"x": np.array([[1, 2, 3], [4, 5, 6]], np.float32), "k": np.array([2, 3], np.int64),
              "text": np.array([b"ab", "\u00e9".encode()], object), "flag": np.array([True, False])}
    datatypes = {"x": "FP32", "k": "INT64", "text": "BYTES", "flag": "BOOL"}
    inputs = []
    for name, v in values.items():
        inp = grpcclient.InferInput(name, list(v.shape), datatypes[name])
        inp.set_data_from_numpy(v)
        inputs.append(inp)
    raw = client.infer("multi", inputs)
    ref = models.in_process(path, **values)
    for name in ref:
        np.testing.assert_array_equal(raw.as_numpy(name), ref[name])
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(server)))
    request = pb.ModelInferRequest(model_name="multi")
    fields = {"x": "fp32_contents", "k": "int64_contents", "text": "bytes_contents", "flag": "bool_contents"}
    for name, v in values.items():
        t = request.inputs.add(name=name, datatype=datatypes[name], shape=list(v.shape))
        getattr(t.contents, fields[name]).extend(v.ravel().tolist())
    typed = stub.ModelInfer(request, timeout=30)
    assert sorted(o.name for o in typed.outputs) == sorted(ref)
    for out, raw_bytes in zip(typed.outputs, typed.raw_output_contents):
        if out.datatype == "BYTES":
            got = deserialize_bytes_tensor(raw_bytes)
        else:
            got = np.frombuffer(raw_bytes, triton_to_np_dtype(out.datatype))
        np.testing.assert_array_equal(got.reshape(list(out.shape)), ref[out.name])


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def test_errors_have_their_codes_and_say_what_was_expected(stub, iris):
    def infer(**kw):
        request = pb.ModelInferRequest(model_name=kw.pop("model", "iris"))
        t = request.inputs.add(name="features", datatype=kw.pop("datatype", "FP32"), shape=kw.pop("shape", [1, 4]))
        t.contents.fp32_contents.extend(kw.pop("values", [1.0, 2.0, 3.0, 4.0]))
        return lambda: stub.ModelInfer(request, timeout=30)

    code, message = code_of(infer(shape=[1, 3]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected shape [-1, 4], got [1, 3]" in message
    code, message = code_of(infer(shape=[2, 4]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs 8 values, got 4" in message
    code, message = code_of(infer(datatype="INT64"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "contents.int64_contents, got contents.fp32_contents" in message
    code, message = code_of(infer(model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in message
    code, _ = code_of(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="iris", version="7"), timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(lambda: stub.ModelStatistics(pb.ModelStatisticsRequest(name="iris"), timeout=30))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    # the server goes on answering
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live


def test_a_message_over_the_body_limit_is_refused(start_server, iris_path):
    server = start_server(iris_path, "--max-body-bytes", "100000")
    client = grpcclient.InferenceServerClient(address(server))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [features(np.ones((10_000, 4), np.float32))])
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.infer("iris", [features(X)]).as_numpy("probabilities").shape == (3, 3)


def test_api_keys_come_from_the_metadata(start_server, iris_path):
    server = start_server(iris_path, env={"MODELSERVER_API_KEYS": "k1,k2"})
    client = grpcclient.InferenceServerClient(address(server))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [features(X)])
    assert e.value.status() == "StatusCode.UNAUTHENTICATED" and "API key" in e.value.message()
    assert client.infer("iris", [features(X)], headers={"authorization": "Bearer k2"}).as_numpy("probabilities") is not None
    assert client.infer("iris", [features(X)], headers={"x-api-key": "k1"}).as_numpy("probabilities") is not None
    with pytest.raises(InferenceServerException):
        client.infer("iris", [features(X)], headers={"x-api-key": "wrong"})
    assert client.is_server_live()  # health needs no key


def test_a_deadline_ends_a_slow_call(start_server, model_dir):
    server = start_server(models.slow(model_dir / "slow-grpc", 2.0), "--no-warmup")
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(server)))
    request = pb.ModelInferRequest(model_name="slow-grpc")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1.0)
    code, _ = code_of(lambda: stub.ModelInfer(request, timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    answer = stub.ModelInfer(request, timeout=30)
    assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [2.0]


def test_metrics_and_access_log_say_grpc(iris, client):
    client.infer("iris", [features(X)], request_id="metrics")
    text = requests.get(iris.url("/metrics"), timeout=30).text
    assert 'protocol="grpc"' in text and 'endpoint="infer"' in text


def test_reflection_lists_the_services(iris):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(address(iris)))
    (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
    names = {s.name for s in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_health_per_model_and_not_serving_once_draining(start_server, iris_path):
    server = start_server(iris_path, "--drain-seconds", "5")
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address(server)))

    def status(service: str) -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status

    serving = health_pb2.HealthCheckResponse.SERVING
    deadline = time.monotonic() + 30
    while status("") != serving and time.monotonic() < deadline:  # set once the models are loaded
        time.sleep(0.1)
    assert status("") == serving and status("iris") == serving and status("inference.GRPCInferenceService") == serving
    code, _ = code_of(lambda: status("no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND
    server.proc.send_signal(signal.SIGUSR1)  # what the preStop hook sends
    deadline = time.monotonic() + 10
    while status("") == serving and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status("") == health_pb2.HealthCheckResponse.NOT_SERVING and status("iris") != serving


def test_the_home_page_s_grpc_examples_run_as_shown(multi, capsys):
    """The tritonclient snippet runs as the page shows it, and the grpcurl body is a ModelInferRequest
    (sent here with the generated stub: grpcurl itself is not installed)."""
    import html
    import json
    import re

    from google.protobuf import json_format

    server, _ = multi
    page = requests.get(server.url("/"), timeout=30).text
    (snippet,) = [html.unescape(p) for p in re.findall(r"gRPC \(Open Inference Protocol\).*?<pre>(.*?)</pre>", page, re.S)]
    code, grpcurl = snippet.split("\n\ngrpcurl ")
    assert f"127.0.0.1:{server.grpc_port}" in code
    exec(compile(code, "home-page", "exec"), {})
    printed = capsys.readouterr().out
    assert "[b'TEXT!']" in printed  # the "shout" output of the example text
    body = json.loads(re.search(r"-d '(.*)' 127", grpcurl).group(1))
    request = json_format.ParseDict(body, pb.ModelInferRequest())
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(server)))
    assert {o.name for o in stub.ModelInfer(request, timeout=30).outputs} >= {"shout", "total"}


def test_a_taken_grpc_port_leaves_http_serving(start_server, iris_path, iris):
    server = start_server(iris_path, "--grpc-port", str(iris.grpc_port))  # the iris fixture's port
    assert requests.get(server.url("/v2/health/ready"), timeout=30).status_code == 200
    assert "gRPC is not served" in server.log()
    assert "gRPC (Open Inference Protocol)" not in requests.get(server.url("/"), timeout=30).text


def test_sigterm_lets_grpc_calls_in_flight_finish(start_server, model_dir):
    import threading

    server = start_server(models.slow(model_dir / "slow-drain-grpc", 1.5), "--no-warmup")
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(server)))
    request = pb.ModelInferRequest(model_name="slow-drain-grpc")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1.0)
    answers: list[object] = []
    calls = [threading.Thread(target=lambda: answers.append(stub.ModelInfer(request, timeout=30))) for _ in range(3)]
    for c in calls:
        c.start()
    time.sleep(0.5)  # in flight
    server.proc.send_signal(signal.SIGTERM)
    for c in calls:
        c.join()
    assert len(answers) == 3
    assert all(np.frombuffer(a.raw_output_contents[0], np.float32).tolist() == [2.0] for a in answers)
    assert server.proc.wait(30) == 0


def test_worker_processes_share_the_grpc_port(start_server, iris_path):
    """With --workers 2 both workers serve gRPC on one port (SO_REUSEPORT): new connections reach
    both, each answer saying which in its trailing metadata, as HTTP answers do in a header."""
    server = start_server(iris_path, "--workers", "2")
    seen: set[str] = set()
    for _ in range(40):
        channel = grpc.insecure_channel(address(server))
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ServerLive.with_call(pb.ServerLiveRequest(), timeout=30)
        seen.add(dict(call.trailing_metadata())["x-modelserver-worker"])
        channel.close()
        if len(seen) == 2:
            break
    assert len(seen) == 2


# -- TensorFlow Serving's PredictionService and ModelService ---------------------------------------------
def test_tensorflow_serving_predict_metadata_and_status(multi, versioned):
    import tensorflow as tf
    from google.protobuf import wrappers_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    server, path = multi
    channel = grpc.insecure_channel(address(server))
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    values = {"x": np.array([[1, 2, 3], [4, 5, 6]], np.float32), "k": np.array([2, 3], np.int64),
              "text": np.array([b"ab", b"cd"], object), "flag": np.array([True, False])}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    request.model_spec.signature_name = "serving_default"
    for name, v in values.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(v))
    request.output_filter.extend(["shout", "total"])
    answer = predict.Predict(request, timeout=30)
    ref = models.in_process(path, **values)
    assert sorted(answer.outputs) == ["shout", "total"] and answer.model_spec.version.value == 1
    for name in answer.outputs:
        np.testing.assert_array_equal(tf.make_ndarray(answer.outputs[name]), ref[name])

    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values["x"].astype(np.float64)))
    code, message = code_of(lambda: predict.Predict(request, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected float32 values (FP32), got float64" in message
    del request.output_filter[:]
    request.output_filter.append("nope")
    code, message = code_of(lambda: predict.Predict(request, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "output_filter" in message

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "multi"
    meta = predict.GetModelMetadata(meta_request, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(defs)
    serving = defs.signature_def["serving_default"]
    assert sorted(serving.inputs) == ["flag", "k", "text", "x"]
    assert serving.inputs["x"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 3]

    scaled = grpc.insecure_channel(address(versioned))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "scaled"
    status = model_service_pb2_grpc.ModelServiceStub(scaled).GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    by_version = predict_pb2.PredictRequest()
    by_version.model_spec.name = "scaled"
    by_version.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=2))
    by_version.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
    out = prediction_service_pb2_grpc.PredictionServiceStub(scaled).Predict(by_version, timeout=30)
    assert tf.make_ndarray(out.outputs["y"]).tolist() == [[2.0, 4.0]] and out.model_spec.version.value == 2
    by_version.model_spec.ClearField("version")
    by_version.model_spec.version_label = "stable"
    out = prediction_service_pb2_grpc.PredictionServiceStub(scaled).Predict(by_version, timeout=30)
    assert tf.make_ndarray(out.outputs["y"]).tolist() == [[1.0, 2.0]]


def test_grpc_and_http_requests_are_batched_together(start_server, model_dir):
    """Requests arriving while the model is busy merge into one call, whichever transport brought them."""
    import re
    import threading

    server = start_server(models.slow(model_dir / "slow-mixed", 0.5), "--no-warmup")

    def calls() -> float:
        text = requests.get(server.url("/metrics"), timeout=10).text
        m = re.search(r'^modelserver_batch_size_count\{model="slow-mixed"\} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address(server)))
    answers: dict[str, float] = {}

    def over_grpc(i: int) -> None:
        request = pb.ModelInferRequest(model_name="slow-mixed")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(float(i))
        answers[f"grpc{i}"] = float(np.frombuffer(stub.ModelInfer(request, timeout=30).raw_output_contents[0], np.float32)[0])

    def over_http(i: int) -> None:
        r = requests.post(server.url("/v1/models/slow-mixed:predict"), json={"instances": [[float(i)]]}, timeout=30)
        answers[f"http{i}"] = r.json()["predictions"][0][0]

    before = calls()
    first = threading.Thread(target=over_http, args=(100,))  # keeps the model busy while the others arrive
    first.start()
    time.sleep(0.15)
    threads = [threading.Thread(target=f, args=(i,)) for i in range(4) for f in (over_grpc, over_http)]
    for t in threads:
        t.start()
    for t in [first, *threads]:
        t.join()
    assert answers == {"http100": 101.0, **{f"{k}{i}": i + 1.0 for i in range(4) for k in ("grpc", "http")}}
    assert calls() - before <= 3, "the 8 requests that arrived while the model was busy should share a call or two"
