"""Fault for bench/rollout.py's "only slower" release: copied into a bench image as sitecustomize.py (loaded at
interpreter start; the image's PYTHONPATH is /srv/service), it adds 300 ms to every route but the health checks,
so the release passes its health checks, answers every request correctly, and is slower for its users. Only
ever in a bench image, never in service/."""
import time

import liftoff_service.web as web

ADDED_SECONDS = 0.3
_route = web.ServiceApp.route


def _slower_route(self, method, path, environ):
    if path not in ("/healthz", "/readyz"):
        time.sleep(ADDED_SECONDS)
    return _route(self, method, path, environ)


web.ServiceApp.route = _slower_route
