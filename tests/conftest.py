import json
import os
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def examples() -> dict:
    return json.loads((DATA / "context-gap-examples.json").read_text())


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory, examples) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, text in examples["corpus"].items():
        (root / name).write_text(text)
    return root
