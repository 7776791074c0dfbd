"""schemathesis over the served ``/openapi.json``: for the tensor model, an OpenAI-style model and a
model repository, every operation is called with generated requests (valid and invalid), and every answer must
be no 5xx, with a status, content type and body that the document declares. Valid requests and
invalid ones (schemathesis's negative mode) both; ``FUZZ_EXAMPLES`` cases of each kind an operation."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import hf_models

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def tensor_server(start_server, iris_path):
    return start_server(iris_path, "--version-labels", "stable=1")


@pytest.fixture(scope="module")
def llm_server(start_server, model_dir: Path):
    path = hf_models.make_tiny_llama(model_dir / "fuzz-llama")
    return start_server(path, "--name", "my-llm", "--max-sequences", "4")


def fuzz(url: str, adjust=None) -> list[str]:  # type: ignore[no-untyped-def]
    """Every operation of the document at ``url``, ``EXAMPLES`` generated cases each; the failures."""
    schema = schemathesis.openapi.from_url(url)
    failures: list[str] = []
    calls = 0
    for result, mode in itertools.product(list(schema.get_all_operations()), GenerationMode):
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=operation.as_strategy(mode))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            nonlocal calls
            if adjust is not None:
                adjust(case)
            calls += 1
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (a GET without parameters): no negative cases
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as e:  # a check failed: keep going, report them all
            failures.append(f"{operation.label} ({mode.value} cases): {str(e)[:600]}")
    print(f"\nfuzzed {calls} calls over {url}: {len(failures)} operations failed")
    return failures


def test_the_tensor_server_answers_as_its_document_says(tensor_server) -> None:
    failures = fuzz(tensor_server.url("/openapi.json"))
    assert not failures, "\n\n".join(failures)


def _cheap(case) -> None:  # type: ignore[no-untyped-def]
    if isinstance(case.body, dict):
        case.body.pop("explain", None)  # an explanation costs many passes: not what this test is for
        if isinstance(case.body.get("max_tokens"), int):
            case.body["max_tokens"] = min(case.body["max_tokens"], 8)


def test_the_openai_server_answers_as_its_document_says(llm_server) -> None:
    failures = fuzz(llm_server.url("/openapi.json"), _cheap)
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def repository_server(start_server, tmp_path_factory):
    from tests import models

    root = tmp_path_factory.mktemp("fuzz-repository")
    models.scaled(root / "double" / "1", 2.0)
    models.scaled(root / "triple" / "1", 3.0)
    return start_server(None, "--model-repository", str(root), "--load-policy", "on-demand")


def test_a_repository_server_answers_as_its_document_says(repository_server) -> None:
    """Many models by name, loaded on demand: index, load and unload among the operations."""
    failures = fuzz(repository_server.url("/openapi.json"))
    assert not failures, "\n\n".join(failures)
