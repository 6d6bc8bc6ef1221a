from tests.faults.stack import stack  # noqa: F401 - fixture
