from tests.stack.fixtures import stack  # noqa: F401  (the running stack, shared with tests/pages)
