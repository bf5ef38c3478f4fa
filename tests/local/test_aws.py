"""local/aws.py's sessions: the harness's clients are made once and go where the session says."""
from __future__ import annotations

import threading

from botocore.config import Config

from local.aws import EndpointSession, ReusedClients, fake_session

ENDPOINT = "http://127.0.0.1:9"  # nothing is called: making a client sends no request


def test_one_client_per_service_and_settings():
    session = EndpointSession(fake_session(), ENDPOINT)
    ssm = session.client("ssm")
    assert session.client("ssm") is ssm
    assert session.client("ecs") is not ssm
    # Settings equal in value share a client (each `liftoff` run makes its own Config); other settings do not.
    patient = session.client("ssm", config=Config(read_timeout=30))
    assert session.client("ssm", config=Config(read_timeout=30)) is patient
    assert session.client("ssm", config=Config(read_timeout=5)) is not patient
    assert patient is not ssm


def test_every_client_goes_to_the_endpoint_whatever_it_is_asked():
    session = EndpointSession(fake_session(), ENDPOINT)
    assert session.client("cloudformation").meta.endpoint_url == ENDPOINT
    assert session.client("ssm", config=Config(read_timeout=5)).meta.endpoint_url == ENDPOINT
    assert session.region_name == "us-east-1"


def test_threads_asking_at_once_get_the_one_client():
    session = ReusedClients(fake_session())
    start, made = threading.Barrier(8), []

    def ask():
        start.wait()
        made.append(session.client("dynamodb", endpoint_url=ENDPOINT))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 and len({id(client) for client in made}) == 1
