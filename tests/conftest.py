import pytest

from tests.reference import build_reference_predictor


@pytest.fixture(scope="session")
def reference_tiny_512():
    """Meta's video predictor, tiny SAM 2.1 at image_size 512, random weights (seed 0), float32 on CPU."""
    return build_reference_predictor()
