"""Shared fixtures: every test that touches MLflow or caches works in its own temporary folder."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def isolated_runs(tmp_path, monkeypatch):
    """Run from ``tmp_path`` with the default sqlite store and caches under ``tmp_path/runs``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "runs" / "cache"))
    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_gin_config():
    """Gin bindings are process-global: a config parsed by one test (e.g. `sinkhorn.scaling = 0.98` from an
    offline experiment) would otherwise change objectives that a later test builds through the Python API."""
    import gin

    gin.clear_config()
    yield
    gin.clear_config()


def pytest_configure(config):
    os.environ.setdefault("MATCHZOO_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
