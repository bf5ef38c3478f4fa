"""The service's releases: service/VERSION (the code's release) and the API modules it still carries.

Which releases may still run on a stage is the stage's business (the release tool reads it from the
stage's stack and ledger), not a file in the image. What the code itself knows is which releases it
keeps the schema-touching code of (`api/release_X_Y_Z.py`): the tests run those side by side.
"""

from __future__ import annotations

from pathlib import Path

from .schema import SERVICE_DIR, VERSION_FILE, SchemaError, parse_version

API_DIR = Path(__file__).resolve().parent / "api"
ReleaseError = SchemaError

__all__ = ["SERVICE_DIR", "VERSION_FILE", "ReleaseError", "parse_version", "read_current_version", "kept_versions"]


def read_current_version(path: Path = VERSION_FILE) -> str:
    text = path.read_text(encoding="utf-8").strip()
    parse_version(text)
    return text


def kept_versions(api_dir: Path = API_DIR) -> list[str]:
    """The releases whose API code this tree keeps, oldest first."""
    versions = []
    for path in api_dir.glob("release_*_*_*.py"):
        versions.append(".".join(path.stem.split("_")[1:]))
    return sorted(versions, key=parse_version)
