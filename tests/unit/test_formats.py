"""The format registry: which runtime a directory's files call for, and what a mismatch says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelserver.errors import ModelLoadError
from modelserver.runtime import formats
from modelserver.runtime.repository import discover_versions


def savedmodel(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    return path


def hf(path: Path, architecture: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    return path


@pytest.mark.parametrize(
    ("make", "kind", "fmt", "generative"),
    [
        (savedmodel, "savedmodel", "tensorflow", False),
        (lambda p: hf(p, "LlamaForCausalLM"), "hf-generative", "huggingface", True),
        (lambda p: hf(p, "GPT2LMHeadModel"), "hf-generative", "huggingface", True),
        (lambda p: hf(p, "BertModel"), "hf-embedder", "huggingface", False),
    ],
)
def test_the_files_choose_the_runtime(tmp_path, make, kind, fmt, generative):
    d = make(tmp_path / "m")
    chosen = formats.choose(d, "auto")
    assert (chosen.kind, chosen.format, chosen.generative) == (kind, fmt, generative)
    assert formats.choose(d, fmt) is chosen
    assert formats.is_model(d)


def test_a_declared_format_that_does_not_fit_says_which_to_set(tmp_path):
    d = hf(tmp_path / "llm", "LlamaForCausalLM")
    with pytest.raises(ModelLoadError, match="holds a Hugging Face directory .* set the format to huggingface"):
        formats.choose(d, "tensorflow")
    with pytest.raises(ModelLoadError, match="holds a SavedModel .* set the format to tensorflow"):
        formats.choose(savedmodel(tmp_path / "sm"), "huggingface")


def test_a_declared_format_wins_when_a_directory_holds_two(tmp_path):
    d = savedmodel(tmp_path / "both")
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert formats.choose(d, "auto").kind == "savedmodel"
    assert formats.choose(d, "huggingface").kind == "hf-embedder"


def test_a_directory_of_nothing_is_no_model(tmp_path):
    (tmp_path / "empty").mkdir()
    assert formats.detect(tmp_path / "empty") is None
    with pytest.raises(ModelLoadError, match="no model"):
        discover_versions(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="holds no model this server loads"):
        formats.choose(tmp_path / "empty", "auto")


def test_numbered_versions_of_any_format(tmp_path):
    savedmodel(tmp_path / "base" / "1")
    hf(tmp_path / "base" / "3", "BertModel")
    (tmp_path / "base" / "notes").mkdir()
    assert sorted(discover_versions(tmp_path / "base")) == [1, 3]


def test_every_format_answers_to_a_name_the_contract_declares():
    from modelserver.contract import FORMATS

    assert {f.format for f in formats.registered()} <= set(FORMATS) - {"auto"}
