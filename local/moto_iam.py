"""IAM in the emulator: every principal of the local world calls AWS with its own credentials and is held to its
own policies, and every call it makes is recorded for the verdict (local/iam_verdict.py).

Two kinds of caller reach moto_server. The harness (the CDK CLI's deploy, the stand-ins that play AWS's own
services: the ECS agent, the load balancer, Auto Scaling, the alarms) signs with FAKE_ENVIRONMENT's access key
and acts as AWS itself and as the account's administrator (`cdk deploy` runs as the bootstrap's execution role,
AdministratorAccess by default): nothing holds it back and nothing of it is recorded. Everything else signs with
credentials moto issued (an IAM user's access key, or STS credentials of an assumed role: a task's role, a host's
instance profile, a GitHub deploy role, the operator) and is authenticated and authorized as AWS would:
an unknown key is InvalidClientTokenId, and a call no identity policy allows, or one a Deny names, is refused with
AWS's sentence ("User: ARN is not authorized to perform: ACTION on resource: ARN ...").

At run time the check is what moto's own evaluator does, widened where moto is blind: moto passes "*" as the
resource of almost every call, so a statement scoped to ARNs would never match; here the resource is the one
`resource_of` derives from the call (local/iam_verdict.py) and matched with IAM's wildcards, and a statement with
a Condition is taken as allowing (conditions are the verdict's part: it evaluates them with a real evaluator).
The signature is not checked: calls reach moto through local proxies that do not change them, and what is tested
here is who may do what, not SigV4.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import threading
from typing import Any, Callable, Iterable

from local.aws import FAKE_ENVIRONMENT

HARNESS_ACCESS_KEY = FAKE_ENVIRONMENT["AWS_ACCESS_KEY_ID"]
# The CDK bootstrap's roles (`cdk-<qualifier>-deploy-role-...`, assumed by `cdk deploy`): CDK's, not liftoff's, and
# acting for the administrator who deploys; judged as the harness is.
CDK_BOOTSTRAP_ROLE = re.compile(r"^arn:aws:sts::\d+:assumed-role/cdk-[a-z0-9]+-[a-z-]+-role-\d+-[a-z0-9-]+/")
CALLS_PATH = "/_liftoff/iam/calls"
# The name a request is signed for is not always the IAM prefix of its actions.
IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch", "email": "ses"}
# Bounded: a supervisor's world runs for hours; the verdict reads what a test or a walk made.
MAX_RECORDED_CALLS = 200_000


class CallLog:
    """Every authorized (or refused) call of a principal other than the harness, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict] = []

    def add(self, call: dict) -> None:
        with self._lock:
            self._calls.append(call)
            del self._calls[:-MAX_RECORDED_CALLS]

    def read(self) -> list[dict]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


CALLS = CallLog()


class CallsEndpoint:
    """WSGI middleware: `GET CALLS_PATH` answers the recorded calls (JSON list), `DELETE CALLS_PATH` forgets them."""

    def __init__(self, app: Callable[..., Iterable[bytes]], calls: CallLog = CALLS):
        self._app, self._calls = app, calls

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != CALLS_PATH:
            return self._app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "DELETE":
            self._calls.clear()
            answer: Any = {"cleared": True}
        else:
            answer = self._calls.read()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]


def refusal(principal: str, action: str, resource: str, reason: str, *, json_protocol: bool) -> Exception:
    """AWS's sentence for a refused call, with the resource when the call has one, in the call's protocol:
    JSON services answer AccessDeniedException, query services AccessDenied."""
    # moto is imported where the server needs it: `python -m local` reads the calls' summary from here and runs no moto.
    from moto.core.exceptions import AccessDeniedError, JsonRESTError

    on = f" on resource: {resource}" if resource != "*" else ""
    message = f"User: {principal} is not authorized to perform: {action}{on} {reason}"
    if json_protocol:
        return JsonRESTError("AccessDeniedException", message)
    error = AccessDeniedError(principal, action)
    error.description = error.description.replace(f"User: {principal} is not authorized to perform: {action}", message)
    return error


def _speaks_json(headers: Any) -> bool:
    return bool(headers.get("X-Amz-Target"))


def recorded_calls(endpoint: str, *, timeout: float = 10.0) -> list[dict]:
    """What the emulator at `endpoint` recorded (the harness's own calls are never recorded)."""
    import urllib.request

    with urllib.request.urlopen(endpoint.rstrip("/") + CALLS_PATH, timeout=timeout) as answer:
        return json.load(answer)


def summary(calls: list[dict], principal: str) -> tuple[str, list[dict]]:
    """One line for a principal's calls (how many, how many actions, how many refused) and the refused ones."""
    own = [call for call in calls if call["principal"] == principal]
    refused = [call for call in own if not call["allowed"]]
    actions = {call["action"] for call in own}
    return (f"{principal}: {len(own)} call(s), {len(actions)} action(s), {len(refused)} refused"), refused


# --- the decision --------------------------------------------------------------------------------------

def _values(element: Any) -> list[str]:
    return element if isinstance(element, list) else [element]


def _matches(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    # IAM's wildcards: * any run, ? one character; actions ignore case, ARNs do not.
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def statement_applies(statement: dict, action: str, resource: str) -> bool:
    """True if the statement names the action and the resource (an unknown resource, "*", matches any)."""
    if "Action" in statement:
        if not any(_matches(p, action, case_sensitive=False) for p in _values(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_matches(p, action, case_sensitive=False) for p in _values(statement["NotAction"])):
            return False
    else:
        return False
    if resource == "*":
        return True
    if "Resource" in statement:
        return any(_matches(p, resource, case_sensitive=True) for p in _values(statement["Resource"]))
    if "NotResource" in statement:
        return not any(_matches(p, resource, case_sensitive=True) for p in _values(statement["NotResource"]))
    return True


def decide(documents: list[dict], action: str, resources: list[str]) -> tuple[bool, str, str]:
    """Allowed unless a Deny applies; allowed only if an Allow applies to every resource. With the reason AWS gives
    and the resource refused ("" when allowed)."""
    statements = [s for document in documents for s in _values(document.get("Statement", []))]
    for resource in resources:
        # A Deny scoped to ARNs cannot be applied to a call whose resource is not known: the verdict judges those.
        if any(s.get("Effect") == "Deny" and statement_applies(s, action, resource)
               and (resource != "*" or "*" in _values(s.get("Resource", "*"))) for s in statements):
            return False, f"with an explicit deny in an identity-based policy (resource {resource})", resource
        if not any(s.get("Effect") == "Allow" and statement_applies(s, action, resource) for s in statements):
            return False, f"because no identity-based policy allows the {action} action", resource
    return True, "", ""


def _document(policy: Any) -> dict:
    """A policy as moto's backend hands it (a managed policy object, a JSON string, or a dict with its document)
    as a parsed document."""
    from moto.iam.models import Policy

    if isinstance(policy, Policy):
        document = next(version for version in policy.versions if version.is_default).document
    elif isinstance(policy, dict):
        document = policy.get("policy_document", policy)
    else:
        document = policy
    return json.loads(document) if isinstance(document, str) else document


# --- the request's side --------------------------------------------------------------------------------

def access_key_of(headers: Any) -> str | None:
    authorization_header = headers.get("Authorization") or ""
    if "Credential=" not in authorization_header:
        return None
    return authorization_header.split("Credential=", 1)[1].split("/", 1)[0]


def params_of(response: Any) -> dict:
    """The call's parameters: a JSON body as sent, or the form's fields (first value each)."""
    # raw_body: some handlers (DynamoDB's) replace `body` with their parsed parameters before the check.
    body = response.raw_body if isinstance(response.raw_body, (str, bytes)) else b""
    if _speaks_json(response.headers):
        try:
            parsed = json.loads(body or b"{}")
            return parsed if isinstance(parsed, dict) else {}
        except ValueError:
            return {}
    return {key: values[0] if isinstance(values, list) and values else values
            for key, values in (response.querystring or {}).items() if key not in ("Action", "Version")}


def _resource_deriver() -> Callable[..., list[str]]:
    try:
        from local.iam_verdict import resource_arns
    except ImportError:  # the verdict's module not there: every call is judged on its action
        return lambda action, params, *, account, region: ["*"]
    return resource_arns


def install(calls: CallLog = CALLS) -> None:
    """Enforce IAM from the first call on, for every caller but the harness (moto_server calls this at start)."""
    from moto import settings
    from moto.core import authorization
    from moto.iam.access_control import IAMRequest

    resource_arns = _resource_deriver()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    # AWS's managed policies (moto ships a maintained copy) exist, so a role that names one is held to it.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    _attach_managed_policies_of_template_roles()

    def authenticate_and_authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        access_key = access_key_of(self.headers)
        if access_key is None or access_key == HARNESS_ACCESS_KEY:
            return
        operation = self._get_action()
        request = IAMRequest(account_id=self.current_account, method=self.method, path=self.raw_path, data=self.data,
                             body=self.raw_body, headers=self.headers, action=operation)  # InvalidClientTokenId if unknown
        signing_name, operation = request._action.split(":", 1)
        action = f"{IAM_PREFIX_OF_SIGNING_NAME.get(signing_name, signing_name)}:{operation}"
        principal = request._access_key.arn
        if CDK_BOOTSTRAP_ROLE.match(principal):
            return
        params = params_of(self)
        region = request._region
        try:
            resources = resource_arns(action, params, account=self.current_account, region=region)
        except Exception:  # a call the deriver does not know yet is judged on its action alone
            resources = ["*"]
        if resources == ["*"] and resource != "*":  # moto knows it (S3's bucket and key)
            resources = [resource]
        allowed, reason, refused_on = True, "", ""
        if action != "sts:GetCallerIdentity":  # AWS answers it whatever the policies say
            documents = [_document(policy) for policy in request._access_key.collect_policies()]
            allowed, reason, refused_on = decide(documents, action, resources)
        calls.add({"principal": principal, "action": action, "region": region, "account": self.current_account,
                   "params": params, "resources": resources, "allowed": allowed})
        if not allowed:
            raise refusal(principal, action, refused_on, reason, json_protocol=_speaks_json(self.headers))

    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate_and_authorize


def _attach_managed_policies_of_template_roles() -> None:
    """moto's CloudFormation creates a role without its ManagedPolicyArns: attach them, as CloudFormation does."""
    from moto.iam.models import Role, iam_backends
    from moto.utilities.utils import get_partition

    create = Role.create_from_cloudformation_json.__func__

    def create_with_managed_policies(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        role = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = iam_backends[account_id][get_partition(region_name)]
        for policy_arn in cloudformation_json.get("Properties", {}).get("ManagedPolicyArns", []):
            backend.attach_role_policy(policy_arn, role.name)
        return role

    Role.create_from_cloudformation_json = classmethod(create_with_managed_policies)
