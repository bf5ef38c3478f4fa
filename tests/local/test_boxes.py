"""local/boxes.py without Docker: the address a new box takes on its world's network."""
from __future__ import annotations

import subprocess

from local import boxes


class NetworkOnly:
    """A daemon that answers `docker network inspect` for one network: its subnet, and the addresses attached."""

    def __init__(self, subnet: str, attached: list[str]):
        self.subnet, self.attached = subnet, attached

    def run(self, *arguments: str, **_) -> subprocess.CompletedProcess:
        assert arguments[:2] == ("network", "inspect"), arguments
        template = arguments[3]
        shown = self.subnet if "Subnet" in template else " ".join(f"{address}/20" for address in self.attached)
        return subprocess.CompletedProcess(arguments, 0, stdout=shown + "\n", stderr="")


def world(box_addresses: dict[str, str]) -> boxes.BoxWorld:
    return boxes.BoxWorld(name="w", network="w-net", gateway="192.168.16.1", region="us-east-1", registry_container="r",
                          registry_address="192.168.16.2", registry_port=5000, database_container="d",
                          database_address="192.168.16.3", proxy_pid=1, pki_dir="/nowhere", health_file="/nowhere",
                          boxes={instance: boxes.Box(instance_id=instance, container=instance, address=address, local_ipv4="10.0.0.9")
                                 for instance, address in box_addresses.items()})


def test_a_box_takes_the_highest_free_address_below_the_broadcast_address():
    daemon = NetworkOnly("192.168.16.0/20", attached=["192.168.16.2", "192.168.16.3"])
    assert boxes._free_address(daemon, world({})) == "192.168.31.254"


def test_an_address_attached_or_held_by_a_box_not_yet_started_is_not_taken_again():
    # .254 is attached (a box running); .253 is a box created and not started yet (not attached, but its own).
    daemon = NetworkOnly("192.168.16.0/20", attached=["192.168.16.2", "192.168.31.254"])
    assert boxes._free_address(daemon, world({"i-created": "192.168.31.253"})) == "192.168.31.252"


def test_a_worlds_certificates_are_p256_and_the_endpoint_certificate_chains_to_its_ca(tmp_path):
    pki = boxes.make_pki(tmp_path / "pki", "eu-west-1")
    for key in ("ca.key", "endpoints.key"):
        shown = subprocess.run(["openssl", "pkey", "-in", str(pki / key), "-noout", "-text"], capture_output=True, text=True, check=True)
        assert "prime256v1" in shown.stdout, shown.stdout[:200]
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "endpoints.crt")],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    names = subprocess.run(["openssl", "x509", "-in", str(pki / "endpoints.crt"), "-noout", "-ext", "subjectAltName"],
                           capture_output=True, text=True, check=True).stdout
    assert "DNS:*.dkr.ecr.eu-west-1.amazonaws.com" in names and "DNS:*.eu-west-1.amazonaws.com" in names
