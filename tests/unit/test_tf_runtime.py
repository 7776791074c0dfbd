"""The TensorFlow runtime's call path: the flat entry point gives what the public signature gives."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from modelserver.errors import InvalidInput
from modelserver.runtime.tensorflow import load_savedmodel
from tests import models


def _public(servable, signature, inputs):
    fn = servable._fns[signature]
    return {k: v.numpy() for k, v in fn(**servable._feed(signature, inputs)).items()}


def test_flat_calls_equal_the_public_signature(tmp_path):
    servable = load_savedmodel("m", 1, models.multi_dtype(tmp_path / "m"))
    assert servable._calls["serving_default"].__name__ == "flat"  # the fast path is in use
    inputs = {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "k": np.array([2, 5], np.int64),
        "text": np.array([b"ab", b"xyz"], object),
        "flag": np.array([True, False]),
    }
    got, want = servable.predict("serving_default", inputs), _public(servable, "serving_default", inputs)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_flat_calls_see_variables_as_they_are_now(tmp_path):
    servable = load_savedmodel("s", 1, models.scaled(tmp_path / "s", 3.0))
    x = {"x": np.ones((1, 2), np.float32)}
    np.testing.assert_array_equal(servable.predict("serving_default", x)["y"], [[3.0, 3.0]])
    servable._model.f.assign(5.0)  # the variable the model saved as attribute f
    np.testing.assert_array_equal(servable.predict("serving_default", x)["y"], [[5.0, 5.0]])


@pytest.mark.parametrize("shape", [(2, 4), (2,), (1, 2, 3)])
def test_inputs_that_do_not_fit_the_signature_behave_as_through_the_public_call(tmp_path, shape):
    """The server's codecs check shapes first; here the runtime alone must not change the outcome."""
    servable = load_savedmodel("m", 1, models.multi_dtype(tmp_path / "m"))
    rows = shape[0]
    inputs = {
        "x": np.zeros(shape, np.float32),
        "k": np.zeros(rows, np.int64),
        "text": np.array([b"a"] * rows, object),
        "flag": np.zeros(rows, bool),
    }
    try:
        want = _public(servable, "serving_default", inputs)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError):
        with pytest.raises(InvalidInput, match="rejected the input"):
            servable.predict("serving_default", inputs)
        return
    got = servable.predict("serving_default", inputs)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_the_model_s_own_run_time_checks_still_apply(tmp_path):
    servable = load_savedmodel("p", 1, models.picky(tmp_path / "p"))
    with pytest.raises(InvalidInput, match="x must be >= 0"):
        servable.predict("serving_default", {"x": np.array([[-1.0]], np.float32)})
    assert tf.reduce_all(servable.predict("serving_default", {"x": np.array([[4.0]], np.float32)})["y"] == 2.0)
