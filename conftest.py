# Root conftest: keeps the repository root importable when the package is not installed.
