"""The box world's AWS endpoints: `python -m local.endpoints` terminates TLS for `*.<region>.amazonaws.com`
on the boxes' gateway and forwards every call to the emulator on loopback, Host header and body as sent.

One call is answered differently: `DescribeTargetHealth`. moto reports every registered target
`healthy`, always; the load balancer stand-in (local/lb.py) writes the states its real health checks
and draining give (initial / healthy / unhealthy / draining) to a JSON file, and this proxy puts those
states into moto's answer (and adds targets that are draining after their deregistration, which
moto has already forgotten). So the hosts' own `aws elbv2 describe-target-health` and `wait
target-in-service` see what an ALB would tell them.

Run as a process (started and stopped by pid by local/boxes.py) so a world kept by `make local-up`
keeps answering after the command that started it has exited.
"""
from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import urllib.parse
import xml.etree.ElementTree as ElementTree
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ELBV2_NAMESPACE = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
FORWARDED_HEADERS_DROPPED = {"connection", "keep-alive", "transfer-encoding"}
REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "unused": ("Target.NotRegistered", "Target is not registered to the target group"),
}


def read_health(path: Path | None) -> dict[str, dict[str, str]]:
    """{target group ARN: {target id: state}} as the load balancer stand-in last wrote it ({} if none)."""
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def rewrite_target_health(body: bytes, request: dict[str, list[str]], health: dict[str, dict[str, str]]) -> bytes:
    """moto's DescribeTargetHealth answer with the stand-in's states; unchanged for a group it does not serve."""
    group = (request.get("TargetGroupArn") or [""])[0]
    states = health.get(group)
    if states is None:
        return body
    ElementTree.register_namespace("", ELBV2_NAMESPACE)
    root = ElementTree.fromstring(body)
    ns = {"e": ELBV2_NAMESPACE}
    descriptions = root.find(".//e:TargetHealthDescriptions", ns)
    if descriptions is None:
        return body
    asked = {value for key, values in request.items() if key.startswith("Targets.member.") and key.endswith(".Id") for value in values}
    seen = set()
    for member in descriptions.findall("e:member", ns):
        target = member.findtext("e:Target/e:Id", default="", namespaces=ns)
        seen.add(target)
        _set_state(member, states.get(target, "unused"), ns)
    # Draining targets: deregistered in moto already, still in the load balancer for the delay.
    for target, state in states.items():
        if state == "draining" and target not in seen and (not asked or target in asked):
            member = ElementTree.SubElement(descriptions, f"{{{ELBV2_NAMESPACE}}}member")
            target_element = ElementTree.SubElement(member, f"{{{ELBV2_NAMESPACE}}}Target")
            ElementTree.SubElement(target_element, f"{{{ELBV2_NAMESPACE}}}Id").text = target
            ElementTree.SubElement(member, f"{{{ELBV2_NAMESPACE}}}TargetHealth")
            _set_state(member, state, ns)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=False)


def _set_state(member, state: str, ns: dict[str, str]) -> None:
    health = member.find("e:TargetHealth", ns)
    if health is None:
        health = ElementTree.SubElement(member, f"{{{ELBV2_NAMESPACE}}}TargetHealth")
    for child in list(health):
        health.remove(child)
    ElementTree.SubElement(health, f"{{{ELBV2_NAMESPACE}}}State").text = state
    if state in REASONS:
        reason, description = REASONS[state]
        ElementTree.SubElement(health, f"{{{ELBV2_NAMESPACE}}}Reason").text = reason
        ElementTree.SubElement(health, f"{{{ELBV2_NAMESPACE}}}Description").text = description


def make_handler(emulator_port: int, health_file: Path | None):
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name: value for name, value in self.headers.items() if name.lower() not in FORWARDED_HEADERS_DROPPED}
            connection = http.client.HTTPConnection("127.0.0.1", emulator_port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                status, answer_headers = response.status, response.getheaders()
            except OSError as error:
                answer = f"liftoff endpoint proxy: the emulator on port {emulator_port} did not answer: {error}".encode()
                status, answer_headers = 502, [("Content-Type", "text/plain")]
            finally:
                connection.close()
            if status == 200 and b"Action=DescribeTargetHealth" in body:
                answer = rewrite_target_health(answer, urllib.parse.parse_qs(body.decode()), read_health(health_file))
            self.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in FORWARDED_HEADERS_DROPPED | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format, *args):
            pass

    return Forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.endpoints", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="address to listen on (the boxes' gateway)")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--certificate", type=Path, required=True, help="PEM with the certificate and its key")
    parser.add_argument("--emulator-port", type=int, required=True)
    parser.add_argument("--health-file", type=Path, default=None)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(args.emulator_port, args.health_file))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certificate)
    # The handshake happens on the handler's first read, in its own thread: one slow client blocks no other.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print(f"forwarding https://{args.bind}:{args.port} to the emulator on 127.0.0.1:{args.emulator_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
