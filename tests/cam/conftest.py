"""Fixtures shared by the Grad-CAM tests: a small seeded classifier and an image for it."""
import pytest

from tests.cam import nets


@pytest.fixture
def classifier(rng):
    return nets.classifier_2d(rng)


@pytest.fixture
def image(rng):
    return rng.uniform(0.0, 1.0, (8, 8, 3))
