"""pytest hooks and options for pytest-masc (filled in by the plugin work)."""
from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("masc", "MaSC release gates")
    group.addoption("--masc", action="store_true", default=False, help="run MaSC gates")
