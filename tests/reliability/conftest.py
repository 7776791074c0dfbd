"""The reliability tier runs real servers as the server tier does, with the same fixtures."""

from __future__ import annotations

from tests.server.conftest import iris_path, model_dir, start_server  # noqa: F401  (fixtures)
