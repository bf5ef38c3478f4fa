"""gunicorn's entry point: `liftoff_service.wsgi:create(release="1.0.0")` serves another release."""

from __future__ import annotations

import os

from .config import settings_from_env
from .releases import read_current_version
from .web import ServiceApp, create_app

# Requests are mostly waiting on PostgreSQL; threads (and pool connections) carry concurrency.
THREADS_PER_WORKER = 8


def create(release: str | None = None) -> ServiceApp:
    return create_app(
        settings_from_env(os.environ),
        api_release=release or read_current_version(),
        max_connections=THREADS_PER_WORKER,
    )
