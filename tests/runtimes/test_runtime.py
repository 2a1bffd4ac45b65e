"""Input checking shared by every runtime."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import RuntimeFailure
from keel.runtimes.runtime import TensorSpec, check_inputs

SPECS = (
    TensorSpec("features", "float32", (None, 3)),
    TensorSpec("city", "object", (None,)),
)


def valid_inputs() -> dict[str, np.ndarray]:
    return {
        "features": np.zeros((2, 3), dtype=np.float32),
        "city": np.array(["Oslo", "Lima"], dtype=object),
    }


def test_matching_inputs_pass() -> None:
    check_inputs(SPECS, valid_inputs())


def test_strings_may_come_as_a_unicode_array() -> None:
    inputs = valid_inputs() | {"city": np.array(["Oslo", "Lima"])}
    check_inputs(SPECS, inputs)


def test_missing_input_is_named() -> None:
    inputs = valid_inputs()
    del inputs["city"]
    with pytest.raises(RuntimeFailure, match=r"missing input\(s\) \['city'\]"):
        check_inputs(SPECS, inputs)


def test_extra_input_is_named() -> None:
    inputs = valid_inputs() | {"age": np.zeros(2)}
    with pytest.raises(RuntimeFailure, match=r"unexpected input\(s\) \['age'\]"):
        check_inputs(SPECS, inputs)


def test_wrong_dtype_names_input_expected_and_got() -> None:
    inputs = valid_inputs() | {"features": np.zeros((2, 3), dtype=np.float64)}
    with pytest.raises(RuntimeFailure, match="'features' has dtype float64, expected float32"):
        check_inputs(SPECS, inputs)


def test_numbers_are_not_strings() -> None:
    inputs = valid_inputs() | {"city": np.zeros(2)}
    with pytest.raises(RuntimeFailure, match="'city' has dtype float64, expected object"):
        check_inputs(SPECS, inputs)


@pytest.mark.parametrize("shape", [(2, 4), (6,), (1, 2, 3)])
def test_wrong_shape_is_refused(shape: tuple[int, ...]) -> None:
    inputs = valid_inputs() | {"features": np.zeros(shape, dtype=np.float32)}
    with pytest.raises(RuntimeFailure, match=r"expected features: float32\[\?, 3\]"):
        check_inputs(SPECS, inputs)


def test_lists_are_not_arrays() -> None:
    inputs: dict[str, object] = {**valid_inputs(), "features": [[0.0, 0.0, 0.0]]}
    with pytest.raises(RuntimeFailure, match="must be a numpy array, got list"):
        check_inputs(SPECS, inputs)  # type: ignore[arg-type]
