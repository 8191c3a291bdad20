"""Every error class is documented in docs/errors.md and derives from RefcamError."""
from pathlib import Path

import refcam.errors as errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def error_classes():
    return [cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "refcam.errors"]


def test_every_error_is_a_refcam_error_and_documented():
    text = DOC.read_text()
    classes = error_classes()
    assert len(classes) > 25
    for cls in classes:
        assert issubclass(cls, errors.RefcamError)
        assert f"| `{cls.__name__}` |" in text, f"{cls.__name__} is missing from docs/errors.md"
