"""Fault for bench/rollout.py's "answers 5xx under load" release: loaded at interpreter start (the image's
PYTHONPATH is /srv/service), it makes every route but the health checks answer 500, so the release passes
its health checks and fails its users. Only ever in a bench image, never in service/."""
import liftoff_service.web as web

_route = web.ServiceApp.route


def _failing_route(self, method, path, environ):
    if path in ("/healthz", "/readyz"):
        return _route(self, method, path, environ)
    return 500, {"error": "fault injected by bench/faults/sitecustomize.py"}


web.ServiceApp.route = _failing_route
