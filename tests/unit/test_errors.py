"""The model's and calibration's errors are part of the one stemlab error tree."""

from __future__ import annotations

import pytest

from stemlab.calibration import CalibrationError
from stemlab.errors import StemlabError
from stemlab.model.scenario import ScenarioError
from stemlab.sim import ProfileError


@pytest.mark.parametrize("error", [ScenarioError, ProfileError])
def test_value_errors_are_stemlab_and_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, StemlabError)
    assert issubclass(error, ValueError)


def test_calibration_error_is_a_stemlab_error() -> None:
    assert issubclass(CalibrationError, StemlabError)
    assert not issubclass(CalibrationError, ValueError)


def test_old_and_new_paths_name_the_same_classes() -> None:
    from stemlab import errors

    assert errors.ScenarioError is ScenarioError
    assert errors.ProfileError is ProfileError
    assert errors.CalibrationError is CalibrationError
