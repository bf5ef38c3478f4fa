"""`python -m local.moto_server -H HOST -p PORT`: moto's server, with DynamoDB's calls made atomic, ECS's
CloudFormation models keeping what the template says (local/moto_models.py), and clusters whose tasks really run
answered from the ECS stand-in's publications (local/moto_live.py).

DynamoDB checks a condition and writes the item as one step; moto's server answers each request on
its own thread and checks, then writes, with nothing between two requests. Two releases racing for
the lock could then both win here while one always loses on AWS. One lock around every DynamoDB
call gives the emulator AWS's rule; the other services keep moto's threads (a slow CloudFormation
call does not hold up a heartbeat).
"""
from __future__ import annotations

import argparse
import os
import threading
from typing import Any, Callable, Iterable

from local import botocore_data

botocore_data.share_one_loader()  # before moto, whose modules make sessions as they import

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app  # noqa: E402
from werkzeug.serving import run_simple  # noqa: E402

from local import moto_iam, moto_live, moto_models  # noqa: E402

DYNAMODB_TARGET_PREFIX = "DynamoDB_"


class AtomicDynamoDB:
    """WSGI middleware: DynamoDB requests (named by their X-Amz-Target) run one at a time, body and all."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return self._app(environ, start_response)
        with self._lock:
            # The whole answer is made inside the lock: a lazy body would run the backend after release.
            return list(self._app(environ, start_response))


def list_moto_modules_once() -> None:
    """moto's dispatcher lists its own package directory (a listdir and ~150 isdir calls) on every request to find
    the service a host names; the list never changes while the server runs (~6 % of an emulator's CPU, profiled)."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


_prepared = False


def prepare() -> None:
    """The harness's models and IAM rules installed, and AWS's managed policies loaded, once per process: an emulator
    forked from a process that did this (local/emulator.py's warm starts) starts with it done.

    moto loads the managed policies (~1,600) for every partition's IAM backend on an emulator's first call (~0.6 CPU-s,
    profiled): its access-key lookup visits them all."""
    global _prepared
    if _prepared:
        return
    moto_models.install()
    moto_live.install()
    moto_iam.install()
    list_moto_modules_once()
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends
    from moto.utilities.utils import PARTITION_NAMES

    for partition in PARTITION_NAMES:
        iam_backends[DEFAULT_ACCOUNT_ID][partition]
    _prepared = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    if _prepared:
        from moto.moto_api._internal import mock_random

        # moto's ids (stacks, instances, keys) come from its own generator, seeded once: every emulator forked from
        # one process would hand out the same ones.
        mock_random.seed()
    print("moto's models: " + ("prepared before this process was forked (a warm start)" if _prepared else "prepared now"),
          flush=True)
    prepare()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server does: the URLs moto hands out name it
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, moto_iam.CallsEndpoint(moto_live.PublishEndpoint(AtomicDynamoDB(app))), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
