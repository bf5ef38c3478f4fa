"""gunicorn settings; only PORT comes from outside (validated before gunicorn starts)."""

import os

from liftoff_service.logs import logging_config_dict
from liftoff_service.wsgi import THREADS_PER_WORKER

bind = [f"0.0.0.0:{os.environ.get('PORT', '8080')}"]
worker_class = "gthread"
# One worker per instance: scale out with instances (Fargate tasks are often < 1 vCPU), and a
# SIGTERM that lands while gunicorn is still forking a second worker is lost by that worker,
# which then holds the exit for the whole graceful_timeout (seen with 2 workers, 1 run in 25).
workers = 1
threads = THREADS_PER_WORKER
# The platform sends SIGKILL 10-15 s after SIGTERM; finish in-flight requests well before that.
graceful_timeout = 8
timeout = 30
# Longer than the ALB's 60 s idle timeout, so the ALB, not us, closes idle connections
# (otherwise it may reuse one we just closed and answer a client with 502).
keepalive = 75
accesslog = None
logconfig_dict = logging_config_dict()
# A read-only root filesystem (Fargate, hardened hosts) has no writable /tmp for heartbeats.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn's admin socket lives in $HOME; several instances on one host (or a read-only root)
# would collide or fail, and nothing on the platform uses it.
control_socket_disable = True
