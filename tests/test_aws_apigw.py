"""API Gateway proxy events and responses, checked against AWS's own material.

The samples are read at test time from the conformance folder (../shared/conformance, see
its SOURCES.md); nothing is copied here. Most of them were written by hand for AWS's
libraries and docs and contain slips (a header in one map but not the other, a flag that
contradicts its body). The localstack snapshot is what AWS itself sent and answered, so it
is checked strictly and without exceptions. Everywhere else each allowed difference is
named below, by file and key, with the reason.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from squall.events.aws_apigw import (
    MalformedProxyResponse,
    http_api_v2_event,
    response_from_v1,
    response_from_v2,
    rest_api_v1_event,
)
from squall.events.http import InvalidResponse
from squall.types import HttpRequest, HttpResponse

GO = "lambda-go-events/events/testdata"
PT = "powertools-events/tests/events"
JAVA = "java-lambda-events/aws-lambda-java-tests/src/test/resources"
SAM = "sam-cli-events/samcli/lib/generated_sample_events"
SNAPSHOT = "localstack/tests/aws/services/apigateway/test_apigateway_lambda.snapshot.json"
SNAPSHOT_TEST = "tests/aws/services/apigateway/test_apigateway_lambda.py::"

# The time and epoch in AWS's documentation example disagree (1583348638390 is 4 March),
# and many samples copy both (one without the space).
DOC_EXAMPLE_TIMES = {"12/Mar/2020:19:03:58 +0000", "12/Mar/2020:19:03:58+0000"}


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the conformance folder, or "sam:<template>"
    missing: dict[str, str] = field(default_factory=dict)  # keys AWS sends, absent here
    skip: dict[str, str] = field(default_factory=dict)  # derivable fields the sample gets wrong
    trust_b64: bool = True  # False where isBase64Encoded is true but the body is plain text

    def __str__(self) -> str:
        return self.path.rsplit("/", 1)[-1]


# Keys present in samples because of features Squall does not have.
V2_FEATURE_KEYS = {
    "stageVariables": "stage variables (AWS omits the key when there are none)",
    "requestContext.authorizer": "JWT, Lambda and IAM authorizers",
    "requestContext.authentication": "mutual TLS client certificates",
}
V1_FEATURE_KEYS = {
    "version": "sent by HTTP APIs using payload 1.0 only; REST APIs send none (AWS recording)",
    "requestContext.authorizer": "authorizers",
    "requestContext.operationName": "OpenAPI operation names",
    "requestContext.identity.apiKey": "API keys",
    "requestContext.identity.apiKeyId": "API keys",
    "requestContext.identity.clientCert": "mutual TLS client certificates",
}
PREDATES_RECORDING = "AWS's 2024 recording has it; this older hand-written sample does not"
HTTP_API_V1 = "an HTTP API payload-1.0 sample: HTTP APIs have no resources, REST APIs do"
NO_UA_HEADER = "the sample has a userAgent but no User-Agent header to derive it from"
UA2 = "requestContext.http.userAgent"
BAD_B64_FLAG = "isBase64Encoded is true but the body is plain text"
ONLY_RAW_PATH_EDITED = "the sample added a trailing slash to its path and nowhere else"

V2_SAMPLES = [
    Sample(f"{GO}/apigw-v2-request-iam.json", skip={UA2: NO_UA_HEADER}),
    Sample(f"{GO}/apigw-v2-request-jwt-authorizer.json", skip={UA2: NO_UA_HEADER}),
    Sample(f"{GO}/apigw-v2-request-lambda-authorizer.json", skip={UA2: NO_UA_HEADER}),
    Sample(f"{GO}/apigw-v2-request-no-authorizer.json"),
    Sample(
        f"{GO}/lambda-urls-request.json",
        missing={
            "routeKey": "the Lambda docs say function URLs set it to the $default placeholder",
            "requestContext.routeKey": "likewise a $default placeholder per the Lambda docs",
            "requestContext.stage": "likewise a $default placeholder per the Lambda docs",
        },
        skip={UA2: NO_UA_HEADER},
    ),
    Sample(
        f"{PT}/apiGatewayProxyV2EventPathTrailingSlash.json",
        skip={UA2: NO_UA_HEADER, "requestContext.http.path": ONLY_RAW_PATH_EDITED},
    ),
    *[
        Sample(f"{PT}/apiGatewayProxyV2{name}.json", skip={UA2: NO_UA_HEADER})
        for name in (
            "Event",
            "Event_GET",
            "IamEvent",
            "LambdaAuthorizerEvent",
            "OtherGetEvent",
            "SchemaMiddlwareInvalidEvent",
            "SchemaMiddlwareValidEvent",
        )
    ],
    Sample(f"{JAVA}/apigw_http_event.json", skip={UA2: NO_UA_HEADER}),
    Sample(
        "sam:HttpApi",
        skip={
            "isBase64Encoded": "sam-cli base64-encodes its default JSON body, which has no "
            "content type; AWS sends such UTF-8 text as text",
            "body": "the same body, base64 there and text here (body.decoded is compared)",
            UA2: NO_UA_HEADER,
        },
    ),
]

GO_V1_MISSING = {
    "isBase64Encoded": "the Go library's sample omits it",
    "requestContext.deploymentId": PREDATES_RECORDING,
    "requestContext.identity.principalOrgId": PREDATES_RECORDING,
}
GO_V1_SKIP = {
    "requestContext.path": "lacks the /testStage prefix its own stage implies",
    "requestContext.domainPrefix": "is not the first label of its domainName",
}
HTTP_API_V1_SAMPLE = {
    "missing": {"requestContext.deploymentId": PREDATES_RECORDING},
    "skip": {
        "requestContext.resourceId": HTTP_API_V1,
        "requestContext.identity.userAgent": NO_UA_HEADER,
        # AWS recorded a REST API keeping the last (category=electronics&category=books
        # gave "books"); this doc example keeps the first, yet the last for its headers.
        "queryStringParameters": "keeps the first repeated value, see the AWS recording",
    },
}
JAVA_OLD_V1_MISSING = {
    "multiValueHeaders": "an old sample from before multi-value support",
    "multiValueQueryStringParameters": "an old sample from before multi-value support",
    "requestContext.deploymentId": PREDATES_RECORDING,
    "requestContext.domainName": PREDATES_RECORDING,
    "requestContext.domainPrefix": PREDATES_RECORDING,
    "requestContext.extendedRequestId": PREDATES_RECORDING,
    "requestContext.identity.principalOrgId": PREDATES_RECORDING,
}


def _pt_v1(name: str, *, trust_b64: bool = True, **skip: str) -> Sample:
    if not trust_b64:
        skip["isBase64Encoded"] = BAD_B64_FLAG
    return Sample(
        f"{PT}/{name}.json",
        missing=HTTP_API_V1_SAMPLE["missing"],
        skip={**HTTP_API_V1_SAMPLE["skip"], **skip},
        trust_b64=trust_b64,
    )


ORIGIN_ONLY_IN_HEADERS = "Origin is in headers but not multiValueHeaders; AWS fills both"
POST_BUT_GET = {"requestContext.httpMethod": "GET, though the request's httpMethod is POST"}
V1_SAMPLES = [
    Sample(f"{GO}/apigw-request.json", missing=GO_V1_MISSING, skip=GO_V1_SKIP),
    Sample(f"{GO}/apigw-restapi-openapi-request.json", missing=GO_V1_MISSING, skip=GO_V1_SKIP),
    _pt_v1("apiGatewayProxyEvent"),
    _pt_v1("apiGatewayProxyEventAnotherPath", trust_b64=False),
    _pt_v1("apiGatewayProxyEventNoOrigin"),
    _pt_v1(
        "apiGatewayProxyEventPathTrailingSlash",
        trust_b64=False,
        **{"requestContext.path": ONLY_RAW_PATH_EDITED},
    ),
    _pt_v1("apiGatewayProxyEvent_noVersionAuth", trust_b64=False),
    _pt_v1("apiGatewayProxyOtherEvent", multiValueHeaders=ORIGIN_ONLY_IN_HEADERS),
    *[
        _pt_v1(name, multiValueHeaders=ORIGIN_ONLY_IN_HEADERS, **POST_BUT_GET)
        for name in (
            "apigatewayeSchemaMiddlwareInvalidEvent",
            "apigatewayeSchemaMiddlwareValidEvent",
        )
    ],
    Sample(
        f"{JAVA}/apigw_rest_event.json",
        missing=HTTP_API_V1_SAMPLE["missing"],
        skip={
            "requestContext.resourceId": HTTP_API_V1,
            "requestContext.identity.userAgent": NO_UA_HEADER,
            "headers": "Header3 is in multiValueHeaders only; AWS puts every header in both",
        },
    ),
    Sample(f"{JAVA}/apigw/events/apigw_event.json", missing=JAVA_OLD_V1_MISSING),
    Sample(
        f"{JAVA}/apigw/events/apigw_event_nobody.json",
        missing=JAVA_OLD_V1_MISSING,
        skip={"body": "an empty body is null on AWS (recorded), not an empty string"},
    ),
    Sample(
        "sam:AwsProxy",
        missing={
            "requestContext.deploymentId": PREDATES_RECORDING,
            "requestContext.domainName": PREDATES_RECORDING,
            "requestContext.domainPrefix": PREDATES_RECORDING,
            "requestContext.extendedRequestId": PREDATES_RECORDING,
            "requestContext.identity.principalOrgId": PREDATES_RECORDING,
        },
        skip={
            "headers": "its Host differs between headers and multiValueHeaders",
            "isBase64Encoded": "sam-cli base64-encodes its default JSON body, which has no "
            "content type; a REST API without binaryMediaTypes sends text",
            "body": "the same body, base64 there and text here (body.decoded is compared)",
        },
    ),
]


# -- loading and reconstructing ----------------------------------------------------------


def load(conformance_dir: Path, sample: Sample) -> dict[str, Any]:
    if sample.path.startswith("sam:"):
        return sam_event(conformance_dir, sample.path.removeprefix("sam:"))
    return json.loads((conformance_dir / sample.path).read_text())


def sam_event(conformance_dir: Path, template: str) -> dict[str, Any]:
    """Fill a sam-cli Mustache template from event-mapping.json's defaults."""
    root = conformance_dir / SAM
    mapping = json.loads((root / "event-mapping.json").read_text())["apigateway"]
    entry = next(e for e in mapping.values() if e["filename"] == template)
    text = (root / "events" / "apigateway" / f"{template}.json").read_text()
    for tag, spec in entry["tags"].items():
        placeholder = "{{{" + tag.replace("-", "_") + "}}}"
        value = spec.get("default", "")
        if spec.get("encoding") == "base64":
            value = base64.b64encode(value.encode()).decode()
        if spec.get("type") == "dict":
            text = text.replace(f'"{placeholder}"', value)
        text = text.replace(placeholder, json.dumps(value)[1:-1])
    assert "{{{" not in text, f"unfilled placeholder in {template}"
    return json.loads(text)


def body_bytes(event: dict[str, Any], *, trust_flag: bool = True) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    return base64.b64decode(body) if trust_flag and event.get("isBase64Encoded") else body.encode()


def request_from_v2(aws: dict[str, Any], sample: Sample) -> HttpRequest:
    rc = aws["requestContext"]
    headers = [(name.lower(), value) for name, value in aws.get("headers", {}).items()]
    if aws.get("cookies"):
        headers.append(("cookie", "; ".join(aws["cookies"])))
    return HttpRequest(
        method=rc["http"]["method"],
        path=aws["rawPath"],
        query_string=aws.get("rawQueryString", ""),
        headers=headers,
        body=body_bytes(aws, trust_flag=sample.trust_b64),
        path_params=dict(aws.get("pathParameters") or {}),
        route=aws.get("routeKey", "$default"),
        source_ip=rc["http"]["sourceIp"],
        http_version=rc["http"]["protocol"].split("/", 1)[1],
        time_epoch_ms=rc["timeEpoch"],
        request_id=rc["requestId"],
    )


def request_from_v1(aws: dict[str, Any], *, trust_flag: bool = True) -> HttpRequest:
    rc = aws["requestContext"]
    headers: list[tuple[str, str]] = []
    for name, values in (aws.get("multiValueHeaders") or {}).items():
        # localstack's snapshot transformer turned a few lists into one placeholder string
        values = values if isinstance(values, list) else [values]
        headers += [(name.lower(), value) for value in values]
    seen = {name for name, _ in headers}
    single = aws.get("headers") or {}
    headers += [(k.lower(), v) for k, v in single.items() if k.lower() not in seen]
    multi_query = aws.get("multiValueQueryStringParameters") or {
        k: [v] for k, v in (aws.get("queryStringParameters") or {}).items()
    }
    body = aws.get("body")
    if isinstance(body, dict):  # the localstack echo Lambda parsed the JSON body it received
        body = json.dumps(body)
    epoch = rc.get("requestTimeEpoch")
    return HttpRequest(
        method=aws["httpMethod"],
        path=aws["path"],
        query_string=urlencode([(k, v) for k, vs in multi_query.items() for v in vs]),
        headers=headers,
        body=body_bytes({**aws, "body": body}, trust_flag=trust_flag),
        path_params=dict(aws.get("pathParameters") or {}),
        route=f"{aws['httpMethod']} {aws['resource']}",
        source_ip=rc["identity"]["sourceIp"],
        http_version=rc.get("protocol", "HTTP/1.1").split("/", 1)[1],
        time_epoch_ms=epoch if isinstance(epoch, int) else 0,
        request_id=rc["requestId"],
    )


def v2_event_for(aws: dict[str, Any], sample: Sample) -> dict[str, Any]:
    rc = aws["requestContext"]
    return http_api_v2_event(
        request_from_v2(aws, sample),
        stage=rc.get("stage", "$default"),
        api_id=rc["apiId"],
        account_id=rc["accountId"],
        domain_name=rc["domainName"],
    )


def v1_event_for(aws: dict[str, Any], sample: Sample | None = None) -> dict[str, Any]:
    rc = aws["requestContext"]
    return rest_api_v1_event(
        request_from_v1(aws, trust_flag=sample is None or sample.trust_b64),
        stage=rc["stage"],
        api_id=rc["apiId"],
        account_id=rc["accountId"],
        domain_name=rc.get("domainName"),
    )


def key_paths(event: dict[str, Any], nested: tuple[str, ...]) -> dict[str, set[str]]:
    """Key sets of the event and of the named nested objects ("requestContext", ...)."""
    out = {"": set(event)}
    for path in nested:
        node: Any = event
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            out[path] = {f"{path}.{k}" for k in node}
    return out


def assert_same_keys(
    ours: dict, aws: dict, nested: tuple[str, ...], feature: dict, missing: dict
) -> None:
    mine, theirs = key_paths(ours, nested), key_paths(aws, nested)
    for level in mine.keys() | theirs.keys():
        expected = theirs.get(level, set()) - feature.keys()
        actual = mine.get(level, set()) - missing.keys()
        assert actual == expected, f"key set of {level or 'the event'}"
    # Every declared omission is real, so the list cannot hide a regression.
    all_mine, all_theirs = set().union(*mine.values()), set().union(*theirs.values())
    assert {k for k in missing if k in all_theirs or k not in all_mine} == set()


def assert_equal_except(pairs: dict[str, tuple[Any, Any]], skip: dict[str, str]) -> None:
    """Ours equals AWS's for every pair not skipped, and every skipped pair really differs."""
    kept = {k: v for k, v in pairs.items() if k not in skip}
    assert {k: v[0] for k, v in kept.items()} == {k: v[1] for k, v in kept.items()}
    assert [k for k in skip if k in pairs and pairs[k][0] == pairs[k][1]] == []


def lower_keys(mapping: dict | None) -> dict | None:
    return None if mapping is None else {k.lower(): v for k, v in mapping.items()}


# -- 1. every derivable field, and the key sets ------------------------------------------


@pytest.mark.parametrize("sample", V2_SAMPLES, ids=str)
def test_http_api_v2_event_matches_aws_sample(conformance_dir: Path, sample: Sample) -> None:
    aws = load(conformance_dir, sample)
    ours = v2_event_for(aws, sample)
    a_rc, o_rc = aws["requestContext"], ours["requestContext"]
    pairs = {
        "version": (ours["version"], aws["version"]),
        "routeKey": (ours["routeKey"], aws.get("routeKey", ours["routeKey"])),
        "rawPath": (ours["rawPath"], aws["rawPath"]),
        "rawQueryString": (ours["rawQueryString"], aws["rawQueryString"]),
        "cookies": (ours.get("cookies"), aws.get("cookies")),
        # AWS lower-cases v2 header names; some hand-written samples do not.
        "headers": (ours["headers"], lower_keys(aws["headers"])),
        "queryStringParameters": (
            ours.get("queryStringParameters"),
            aws.get("queryStringParameters"),
        ),
        "pathParameters": (ours.get("pathParameters"), aws.get("pathParameters")),
        "body": (ours.get("body"), aws.get("body")),
        "body.decoded": (body_bytes(ours), request_from_v2(aws, sample).body),
        "isBase64Encoded": (ours["isBase64Encoded"], aws["isBase64Encoded"]),
        "requestContext.accountId": (o_rc["accountId"], a_rc["accountId"]),
        "requestContext.apiId": (o_rc["apiId"], a_rc["apiId"]),
        "requestContext.domainName": (o_rc["domainName"], a_rc["domainName"]),
        "requestContext.domainPrefix": (o_rc["domainPrefix"], a_rc["domainPrefix"]),
        "requestContext.requestId": (o_rc["requestId"], a_rc["requestId"]),
        "requestContext.routeKey": (o_rc["routeKey"], a_rc.get("routeKey", o_rc["routeKey"])),
        "requestContext.stage": (o_rc["stage"], a_rc.get("stage", o_rc["stage"])),
        "requestContext.timeEpoch": (o_rc["timeEpoch"], a_rc["timeEpoch"]),
        "requestContext.http.method": (o_rc["http"]["method"], a_rc["http"]["method"]),
        "requestContext.http.path": (o_rc["http"]["path"], a_rc["http"]["path"]),
        "requestContext.http.protocol": (o_rc["http"]["protocol"], a_rc["http"]["protocol"]),
        "requestContext.http.sourceIp": (o_rc["http"]["sourceIp"], a_rc["http"]["sourceIp"]),
        "requestContext.http.userAgent": (o_rc["http"]["userAgent"], a_rc["http"]["userAgent"]),
    }
    if a_rc["time"] not in DOC_EXAMPLE_TIMES:
        pairs["requestContext.time"] = (o_rc["time"], a_rc["time"])
    assert_equal_except(pairs, sample.skip)

    nested = ("requestContext", "requestContext.http")
    assert_same_keys(ours, aws, nested, V2_FEATURE_KEYS, sample.missing)


@pytest.mark.parametrize("sample", V1_SAMPLES, ids=str)
def test_rest_api_v1_event_matches_aws_sample(conformance_dir: Path, sample: Sample) -> None:
    aws = load(conformance_dir, sample)
    ours = v1_event_for(aws, sample)
    a_rc, o_rc = aws["requestContext"], ours["requestContext"]
    a_id, o_id = a_rc["identity"], o_rc["identity"]
    pairs = {
        "resource": (ours["resource"], aws["resource"]),
        "path": (ours["path"], aws["path"]),
        "httpMethod": (ours["httpMethod"], aws["httpMethod"]),
        # The sample's spelling is the client's; ours is title-cased (see the module doc).
        "headers": (lower_keys(ours["headers"]), lower_keys(aws["headers"])),
        "queryStringParameters": (ours["queryStringParameters"], aws["queryStringParameters"]),
        "pathParameters": (ours["pathParameters"], aws["pathParameters"]),
        "body": (ours["body"], aws["body"]),
        "body.decoded": (body_bytes(ours), body_bytes(aws, trust_flag=sample.trust_b64)),
        "isBase64Encoded": (ours["isBase64Encoded"], aws.get("isBase64Encoded", False)),
        "requestContext.accountId": (o_rc["accountId"], a_rc["accountId"]),
        "requestContext.apiId": (o_rc["apiId"], a_rc["apiId"]),
        "requestContext.httpMethod": (o_rc["httpMethod"], a_rc["httpMethod"]),
        "requestContext.path": (o_rc["path"], a_rc["path"]),
        "requestContext.protocol": (o_rc["protocol"], a_rc["protocol"]),
        "requestContext.requestId": (o_rc["requestId"], a_rc["requestId"]),
        "requestContext.requestTime": (o_rc["requestTime"], a_rc["requestTime"]),
        "requestContext.requestTimeEpoch": (o_rc["requestTimeEpoch"], a_rc["requestTimeEpoch"]),
        "requestContext.resourcePath": (o_rc["resourcePath"], a_rc["resourcePath"]),
        "requestContext.stage": (o_rc["stage"], a_rc["stage"]),
        "requestContext.identity.sourceIp": (o_id["sourceIp"], a_id["sourceIp"]),
        "requestContext.identity.userAgent": (o_id["userAgent"], a_id["userAgent"]),
    }
    if "multiValueHeaders" in aws:
        pairs["multiValueHeaders"] = (
            lower_keys(ours["multiValueHeaders"]),
            lower_keys(aws["multiValueHeaders"]),
        )
    if "multiValueQueryStringParameters" in aws:
        pairs["multiValueQueryStringParameters"] = (
            ours["multiValueQueryStringParameters"],
            aws["multiValueQueryStringParameters"],
        )
    for key in ("domainName", "domainPrefix"):
        if key in a_rc:
            pairs[f"requestContext.{key}"] = (o_rc[key], a_rc[key])
    assert_equal_except(pairs, sample.skip)

    nested = ("requestContext", "requestContext.identity")
    assert_same_keys(ours, aws, nested, V1_FEATURE_KEYS, sample.missing)


def localstack_payloads(conformance_dir: Path) -> dict[str, dict[str, Any]]:
    """The REST AWS_PROXY events AWS delivered to localstack's echo Lambda, by snapshot key."""
    snapshot = json.loads((conformance_dir / SNAPSHOT).read_text())
    recorded = snapshot[SNAPSHOT_TEST + "test_lambda_aws_proxy_integration"]["recorded-content"]
    mapping = snapshot[SNAPSHOT_TEST + "test_lambda_aws_proxy_integration_request_data_mapping"]
    payloads = dict(recorded)
    payloads["http-proxy-invocation-data-mapping"] = mapping["recorded-content"][
        "http-proxy-invocation-data-mapping"
    ]["content"]
    return payloads


# The client asked for "//proxy-value" (or "//hardcoded"); AWS normalised `path` but kept
# the raw form in requestContext.path. HttpRequest carries only the normalised path.
DOUBLE_SLASH_ENTRIES = {"invocation-payload-with-prepended-slash", "invocation-hardcoded"}
CLIENT_SPELLED = {
    "Accept",
    "Accept-Encoding",
    "Authorization",
    "Content-Type",
    "Host",
    "User-Agent",
}


def test_rest_api_v1_event_matches_the_aws_recording(conformance_dir: Path) -> None:
    payloads = localstack_payloads(conformance_dir)
    assert len(payloads) == 12
    for name, aws in payloads.items():
        ours = v1_event_for(aws)
        o_rc, a_rc = ours["requestContext"], aws["requestContext"]
        # Given the request AWS received, When we build the event, Then it is AWS's event.
        assert set(ours) == set(aws), name
        assert set(o_rc) == set(a_rc), name
        assert o_rc["identity"] == a_rc["identity"], name
        for key in ("path", "resource", "httpMethod", "pathParameters", "stageVariables"):
            assert ours[key] == aws[key], (name, key)
        for key in ("queryStringParameters", "multiValueQueryStringParameters"):
            assert ours[key] == aws[key], (name, key)
        assert ours["isBase64Encoded"] is aws["isBase64Encoded"] is False
        assert (json.loads(ours["body"]) if ours["body"] else None) == aws["body"], name
        assert lower_keys(ours["headers"]) == lower_keys(aws["headers"]), name
        recorded_multi = {
            k.lower(): v if isinstance(v, list) else [v]
            for k, v in aws["multiValueHeaders"].items()
        }
        assert lower_keys(ours["multiValueHeaders"]) == recorded_multi, name
        # Title-casing reproduces AWS's spelling of what HTTP clients send.
        for header in CLIENT_SPELLED & set(aws["headers"]):
            assert header in ours["headers"] and header in ours["multiValueHeaders"], header
        for key in ("accountId", "apiId", "domainName", "httpMethod", "protocol", "requestId"):
            assert o_rc[key] == a_rc[key], (name, key)
        for key in ("resourcePath", "stage"):
            assert o_rc[key] == a_rc[key], (name, key)
        if name not in DOUBLE_SLASH_ENTRIES:
            assert o_rc["path"] == a_rc["path"], name
        # Placeholders replaced the epoch; the echo Lambda returned the body parsed.
        assert_same_types(ours, aws, skip={"requestContext.requestTimeEpoch", "body"})


def test_v1_drops_the_headers_aws_strips_and_v2_keeps_them() -> None:
    # The recorded POST carries a body but no Content-Length; the v2 sample keeps it.
    req = HttpRequest(
        "POST",
        "/x",
        headers=[("content-length", "2"), ("connection", "keep-alive"), ("x-a", "1")],
        body=b"{}",
    )
    assert rest_api_v1_event(req)["headers"] == {"X-A": "1"}
    assert http_api_v2_event(req)["headers"] == {
        "content-length": "2",
        "connection": "keep-alive",
        "x-a": "1",
    }


# -- 2. types of every shared key --------------------------------------------------------


def assert_same_types(ours: dict, aws: dict, *, skip: set[str], prefix: str = "") -> None:
    for key in ours.keys() & aws.keys():
        where = prefix + key
        if where in skip:
            continue
        mine, theirs = ours[key], aws[key]
        assert type(mine) is type(theirs), f"{where}: {mine!r} vs AWS {theirs!r}"
        if isinstance(mine, dict) and where not in {"headers", "multiValueHeaders"}:
            assert_same_types(mine, theirs, skip=skip, prefix=where + ".")


# A caller identity (values where ours are null) comes from IAM or Cognito auth.
IDENTITY_VALUES = {
    f"requestContext.identity.{k}"
    for k in (
        "accessKey accountId caller cognitoAuthenticationProvider cognitoAuthenticationType "
        "cognitoIdentityId cognitoIdentityPoolId principalOrgId user userArn"
    ).split()
}


@pytest.mark.parametrize("sample", V2_SAMPLES + V1_SAMPLES, ids=str)
def test_shared_keys_have_aws_types(conformance_dir: Path, sample: Sample) -> None:
    aws = load(conformance_dir, sample)
    if "rawPath" in aws:
        ours, skip = v2_event_for(aws, sample), set()
    else:
        ours = v1_event_for(aws, sample)
        skip = {"stageVariables"} | IDENTITY_VALUES  # stage variables; IAM/Cognito identity
    skip |= set(sample.skip)
    assert_same_types(ours, aws, skip=skip)
    for key in ("headers", "multiValueHeaders"):  # values: str, or lists of str
        if ours.get(key) and aws.get(key):
            assert {type(v) for v in ours[key].values()} == {type(v) for v in aws[key].values()}


# -- event details the samples do not show -----------------------------------------------


def test_v2_omits_absent_parts_and_v1_nulls_them() -> None:
    req = HttpRequest("GET", "/health", route="GET /health")
    v2, v1 = http_api_v2_event(req), rest_api_v1_event(req)
    for key in ("cookies", "queryStringParameters", "pathParameters", "body", "stageVariables"):
        assert key not in v2
    assert v2["headers"] == {} and v2["isBase64Encoded"] is False
    for key in ("headers", "multiValueHeaders", "queryStringParameters", "pathParameters"):
        assert v1[key] is None
    assert v1["multiValueQueryStringParameters"] is None and v1["body"] is None
    assert v1["stageVariables"] is None and v1["isBase64Encoded"] is False


def test_cookies_and_repeats() -> None:
    req = HttpRequest(
        "GET",
        "/",
        query_string="a=1&a=2&b=x+y&c=%2B",
        headers=[("cookie", "s=1; t=2"), ("cookie", "u=3"), ("x-a", "1"), ("x-a", "2")],
    )
    v2 = http_api_v2_event(req)
    assert v2["cookies"] == ["s=1", "t=2", "u=3"]
    assert "cookie" not in v2["headers"] and v2["headers"]["x-a"] == "1,2"
    assert v2["queryStringParameters"] == {"a": "1,2", "b": "x y", "c": "+"}
    assert v2["rawQueryString"] == "a=1&a=2&b=x+y&c=%2B"
    v1 = rest_api_v1_event(req)
    assert v1["headers"]["X-A"] == "2" and v1["multiValueHeaders"]["X-A"] == ["1", "2"]
    assert v1["headers"]["Cookie"] == "u=3"
    assert v1["queryStringParameters"] == {"a": "2", "b": "x y", "c": "+"}
    assert v1["multiValueQueryStringParameters"]["a"] == ["1", "2"]


@pytest.mark.parametrize(
    ("content_type", "body", "v2_base64", "v1_base64"),
    [
        ("application/json", b'{"a":1}', False, False),
        ("text/plain; charset=utf-8", "é".encode(), False, False),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True, False),
        ("image/png", b"\x89PNG\r\n", True, True),
        ("text/plain", b"\xff\xfe", True, True),
        (None, b"plain", False, False),
    ],
)
def test_binary_bodies_are_base64(content_type, body, v2_base64, v1_base64) -> None:
    headers = [("content-type", content_type)] if content_type else []
    req = HttpRequest("POST", "/up", headers=headers, body=body)
    for event, flag in ((http_api_v2_event(req), v2_base64), (rest_api_v1_event(req), v1_base64)):
        assert event["isBase64Encoded"] is flag
        assert body_bytes(event) == body


def test_stage_prefixes_and_time() -> None:
    req = HttpRequest("GET", "/a/b", time_epoch_ms=1589522469693, route="ANY /{proxy+}")
    assert http_api_v2_event(req)["rawPath"] == "/a/b"
    named = http_api_v2_event(req, stage="dev")
    assert named["rawPath"] == named["requestContext"]["http"]["path"] == "/dev/a/b"
    v1 = rest_api_v1_event(req)
    assert v1["path"] == "/a/b" and v1["requestContext"]["path"] == "/prod/a/b"
    assert v1["resource"] == v1["requestContext"]["resourcePath"] == "/{proxy+}"
    assert v1["requestContext"]["requestTime"] == "15/May/2020:06:01:09 +0000"
    assert named["requestContext"]["time"] == "15/May/2020:06:01:09 +0000"
    assert v1["requestContext"]["domainName"] == "squall.execute-api.localhost"
    assert v1["requestContext"]["domainPrefix"] == "squall"


# -- 3. responses ------------------------------------------------------------------------


def header_pairs(response: dict[str, Any]) -> set[tuple[str, str]]:
    pairs = {(k.lower(), v) for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        pairs |= {(name.lower(), v) for v in values}
    return pairs


@pytest.mark.parametrize(
    "path",
    [
        f"{GO}/apigw-response.json",
        f"{JAVA}/response/apigw_proxy_response.json",
        f"{JAVA}/apigw/responses/apigw_response.json",
        f"{JAVA}/apigw/responses/apigw_response2.json",
    ],
    ids=lambda p: p.rsplit("/", 1)[-1],
)
def test_rest_api_response_samples(conformance_dir: Path, path: str) -> None:
    aws = json.loads((conformance_dir / path).read_text())
    resp = response_from_v1(aws)
    assert resp.status == aws["statusCode"]
    assert resp.body == aws["body"].encode()
    expected = header_pairs(aws)
    if not any(name == "content-type" for name, _ in expected):
        expected.add(("content-type", "application/json"))  # REST APIs' default, recorded
    assert len(resp.headers) == len(set(resp.headers))
    assert set(resp.headers) == expected


@pytest.mark.parametrize(
    "path",
    [f"{GO}/lambda-urls-response.json", f"{JAVA}/response/apigw_v2_http_response.json"],
    ids=lambda p: p.rsplit("/", 1)[-1],
)
def test_http_api_response_samples(conformance_dir: Path, path: str) -> None:
    aws = json.loads((conformance_dir / path).read_text())
    resp = response_from_v2(aws)
    assert resp.status == aws["statusCode"]
    assert resp.body == aws["body"].encode()
    # Cookies become set-cookie headers; multiValueHeaders is not read by HTTP APIs.
    expected = {(k.lower(), v) for k, v in aws["headers"].items()}
    expected |= {("set-cookie", c) for c in aws["cookies"]}
    assert sorted(resp.headers) == sorted(expected)


def recorded_response(conformance_dir: Path, key: str) -> dict[str, Any]:
    snapshot = json.loads((conformance_dir / SNAPSHOT).read_text())
    test = snapshot[SNAPSHOT_TEST + "test_aws_proxy_response_payload_format_validation"]
    return test["recorded-content"][key]


def joined(resp: HttpResponse, name: str) -> str:
    """How the HTTP client in the recording saw repeated headers."""
    return ", ".join(v for k, v in resp.headers if k == name.lower())


B64 = base64.b64encode(b"test-data").decode()
# What localstack's AWS-validated test made its Lambda return, by snapshot key; the
# outcome is what AWS answered, read from the snapshot.
RECORDED_V1_RESPONSES: list[tuple[str, Any]] = [
    ("invoke-api-no-body", {"statusCode": 200}),
    (
        "invoke-api-with-headers",
        {"statusCode": 200, "headers": {"test-header": "value", "header-bool": True}},
    ),
    ("invoke-api-with-headers-null", {"statusCode": 200, "headers": None}),
    ("invoke-api-b64-encoded-false", {"statusCode": 200, "body": B64}),
    (
        "invoke-api-multi-headers-valid",
        {"statusCode": 200, "multiValueHeaders": {"test-multi": ["value1", "value2"]}},
    ),
    (
        "invoke-api-multi-headers-overwrite",
        {
            "statusCode": 200,
            "multiValueHeaders": {"test-multi": ["value-multi"]},
            "headers": {"test-multi": "value-solo"},
        },
    ),
    (
        "invoke-api-multi-headers-overwrite-casing",
        {
            "statusCode": 200,
            "multiValueHeaders": {"tesT-Multi": ["value-multi"]},
            "headers": {"test-multi": "value-solo"},
        },
    ),
    ("invoke-api-status-code-str", {"statusCode": "201"}),
    # No statusCode at all: AWS answered 200, so statusCode is not required.
    ("invoke-api-only-headers", {"headers": {"test-header": "value"}}),
]
RECORDED_V1_REJECTED: list[tuple[str, Any]] = [
    ("invoke-api-wrong-format", {"statusCode": 200, "wrongValue": "value"}),
    (
        "invoke-api-multi-headers-invalid",
        {"statusCode": 200, "multiValueHeaders": {"test-multi-invalid": "value1"}},
    ),
    ("invoke-api-invalid-status-code", {"statusCode": "test"}),
    ("invoke-api-just-string", "justAString"),
]
SERVER_HEADERS = {"connection", "content-length", "date", "via", "x-cache"}


@pytest.mark.parametrize(
    ("key", "result"), RECORDED_V1_RESPONSES, ids=[k for k, _ in RECORDED_V1_RESPONSES]
)
def test_rest_api_responses_match_the_aws_recording(
    conformance_dir: Path, key: str, result: Any
) -> None:
    recorded = recorded_response(conformance_dir, key)
    resp = response_from_v1(result)
    assert resp.status == (201 if key == "invoke-api-status-code-str" else 200)
    assert resp.body.decode() == recorded["content"]
    for name, value in recorded.get("headers", {}).items():
        if name.lower() in SERVER_HEADERS or name.lower().startswith(("x-amz", "x-amzn")):
            continue  # added by API Gateway / CloudFront on the way out
        assert joined(resp, name) == value, name


@pytest.mark.parametrize(
    ("key", "result"), RECORDED_V1_REJECTED, ids=[k for k, _ in RECORDED_V1_REJECTED]
)
def test_rest_api_rejects_what_aws_rejected(conformance_dir: Path, key: str, result: Any) -> None:
    recorded = recorded_response(conformance_dir, key)
    assert recorded["content"] == {"message": "Internal server error"}
    with pytest.raises(MalformedProxyResponse) as info:
        response_from_v1(result)
    assert info.value.status == 502 and isinstance(info.value, InvalidResponse)


def test_rest_api_base64_body_is_decoded() -> None:
    # The recording (invoke-api-b64-encoded-true) shows the base64 text, as a REST API with
    # no binaryMediaTypes sends; we decode, as one configured for them does.
    resp = response_from_v1({"statusCode": 200, "body": B64, "isBase64Encoded": True})
    assert resp.body == b"test-data"


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        (None, "NoneType"),
        ([{"statusCode": 200}], "list"),
        ({"statusCode": 200, "body": {"a": 1}}, "'body' must be a string"),
        ({"statusCode": True}, "statusCode"),
        ({"statusCode": 700}, "statusCode"),
        ({"statusCode": 200, "headers": ["x"]}, "'headers'"),
        ({"statusCode": 200, "headers": {"x": {"a": 1}}}, "header 'x'"),
        ({"statusCode": 200, "body": "x", "isBase64Encoded": "yes"}, "isBase64Encoded"),
        ({"statusCode": 200, "body": "a", "isBase64Encoded": True}, "not valid base64"),
        ({"errorMessage": "boom", "errorType": "Exception"}, "errorMessage"),
    ],
)
def test_rest_api_malformed_responses(result: Any, fragment: str) -> None:
    with pytest.raises(MalformedProxyResponse, match=fragment) as info:
        response_from_v1(result)
    assert info.value.status == 502


def test_rest_api_null_header_suppresses_the_default_content_type() -> None:
    resp = response_from_v1({"statusCode": 204, "headers": {"Content-Type": None, "X-N": 3}})
    assert resp.headers == [("x-n", "3")]


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"message": "Hello from Lambda!"}, b'{"message": "Hello from Lambda!"}'),
        ("Hello from Lambda!", b"Hello from Lambda!"),  # a string is the body as-is
        ([1, 2], b"[1, 2]"),
        (None, b"null"),
        ({}, b"{}"),
        ({"headers": {"test-header": "value"}}, b'{"headers": {"test-header": "value"}}'),
    ],
)
def test_http_api_infers_a_response_without_status_code(result: Any, body: bytes) -> None:
    json_type = [("content-type", "application/json")]
    assert response_from_v2(result) == HttpResponse(200, json_type, body)


def test_http_api_structured_responses() -> None:
    resp = response_from_v2(
        {
            "statusCode": "201",
            "headers": {"X-Flag": True},
            "cookies": ["a=1", "b=2; Secure"],
            "multiValueHeaders": {"x-ignored": ["1"]},
            "wrongValue": "ignored, as AWS does",
            "body": B64,
            "isBase64Encoded": True,
        }
    )
    assert resp.status == 201 and resp.body == b"test-data"
    assert resp.headers == [
        ("x-flag", "true"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2; Secure"),
    ]


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "test"},
        {"statusCode": 200, "cookies": {"test-cookies-invalid": "value1"}},
        {"statusCode": 200, "body": {"a": 1}},
        {"errorMessage": "test fake error message"},
        {1, 2},
    ],
    ids=["bad-status", "cookies-not-list", "body-not-string", "error-object", "not-json"],
)
def test_http_api_rejects_with_500(result: Any) -> None:
    with pytest.raises(MalformedProxyResponse) as info:
        response_from_v2(result)
    assert info.value.status == 500


# -- 4. an unchanged Lambda handler ------------------------------------------------------


def orders_handler(event: dict, context: Any) -> dict:
    """Written for Lambda behind API Gateway, as people do."""
    order_id = event["pathParameters"]["id"]
    params = event.get("queryStringParameters") or {}
    payload = json.loads(event["body"]) if event.get("body") else {}
    if "qty" not in payload:
        return {"statusCode": 400, "body": json.dumps({"message": "qty is required"})}
    order = {"id": order_id, "qty": payload["qty"], "express": params.get("express") == "1"}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "Location": f"/orders/{order_id}"},
        "body": json.dumps(order),
    }


ORDER = HttpRequest(
    method="PUT",
    path="/orders/42",
    query_string="express=1",
    headers=[("host", "api.example.com"), ("content-type", "application/json")],
    body=b'{"qty": 3}',
    path_params={"id": "42"},
    route="PUT /orders/{id}",
    request_id="r-1",
    time_epoch_ms=1_700_000_000_000,
)


@pytest.mark.parametrize(
    ("build", "parse"),
    [(http_api_v2_event, response_from_v2), (rest_api_v1_event, response_from_v1)],
    ids=["http-api-v2", "rest-api-v1"],
)
def test_unchanged_handler_runs_end_to_end(build, parse) -> None:
    # Given an ordinary Lambda handler, When it gets our event, Then its answer is the response.
    resp = parse(orders_handler(build(ORDER), None))
    assert resp.status == 201
    assert ("location", "/orders/42") in resp.headers
    assert ("content-type", "application/json") in resp.headers
    assert json.loads(resp.body) == {"id": "42", "qty": 3, "express": True}

    no_body = HttpRequest("PUT", "/orders/7", path_params={"id": "7"})
    bad = parse(orders_handler(build(no_body), None))
    assert bad.status == 400 and json.loads(bad.body) == {"message": "qty is required"}


def test_rest_handler_reading_title_cased_headers() -> None:
    def handler(event: dict, context: Any) -> dict:
        kind = event["headers"]["Content-Type"]
        tags = event["multiValueQueryStringParameters"]["tag"]
        return {"statusCode": 200, "multiValueHeaders": {"X-Tag": tags}, "body": kind}

    req = HttpRequest("GET", "/", "tag=a&tag=b", [("content-type", "text/plain")], route="GET /")
    resp = response_from_v1(handler(rest_api_v1_event(req), None))
    assert resp == HttpResponse(
        200, [("x-tag", "a"), ("x-tag", "b"), ("content-type", "application/json")], b"text/plain"
    )


def test_http_api_handler_returning_a_plain_dict() -> None:
    def handler(event: dict, context: Any) -> dict:
        return {"path": event["rawPath"], "who": event["requestContext"]["http"]["sourceIp"]}

    event = http_api_v2_event(HttpRequest("GET", "/me", source_ip="10.0.0.9"))
    resp = response_from_v2(handler(event, None))
    assert resp.status == 200 and json.loads(resp.body) == {"path": "/me", "who": "10.0.0.9"}
