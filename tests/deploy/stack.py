"""Deploys the SAM template onto a moto server and prints the manifest the Rust integration tests run it from.

The template is the only truth about a function: every value in the manifest (environment, role,
timeout, memory, logging, event source mapping, routes) comes from the template after the SAM
transform, from its parameters, or from the resources created here; nothing is made up. Where the
template leaves a value out, the manifest gives the service's documented default (Lambda: timeout 3,
memory 128, x86_64; event source mapping: batch size 10 for SQS, no batching window, enabled).

Why not moto's own CloudFormation: moto 5.2.5 crashes on Fn::FindInMap whose key is a Ref to a
Number parameter (KeyError 30), and silently skips AWS::SecretsManager::Secret while dropping every
environment variable that references it (the consumer lost SPILLWAY_WEBHOOK_SECRET_ARN). So this
module resolves the template itself and creates the resources moto emulates through boto3; the
Lambda functions, event source mappings and HTTP APIs are only recorded (the Rust tests emulate
them), and the rest (SNS, alarms, dashboards, KMS) is resolved and listed as not emulated.

Usage:
  python tests/deploy/stack.py deploy --template PATH --endpoint URL --stack-name NAME
         [--param KEY=VALUE ...] [--region us-east-1]      > manifest.json
  python tests/deploy/stack.py delete --endpoint URL < manifest.json
  python tests/deploy/stack.py assume --endpoint URL --role-arn ARN --session-name NAME
         -> the role's temporary credentials, as the Lambda service gets them for a function
"""

import argparse
import base64
import json
import math
import os
import re
import secrets
import string
import sys
import uuid
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

PARTITION = "aws"  # moto emulates the commercial partition
URL_SUFFIX = "amazonaws.com"
ARTIFACT_BUCKET = "spillway-deploy"  # stands in for local code in the CodeUri the translator sees
NOVALUE = object()  # what Ref AWS::NoValue resolves to: its enclosing key or list item is removed


class DeployError(Exception):
    """A fault in the template, the parameters or a creation, with the place it comes from."""


class IntrinsicError(Exception):
    """A fault inside one intrinsic function; resolve() prefixes it with the function and its path."""


# ---------------------------------------------------------------- parameters


def resolve_parameters(declared: dict, overrides: dict) -> dict:
    """Defaults plus overrides, each checked the way CloudFormation checks them before a deployment."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise DeployError(f"unknown parameter(s) {', '.join(unknown)}: the template declares {', '.join(declared)}")
    values = {}
    for name, spec in declared.items():
        raw = overrides.get(name, spec.get("Default"))
        if raw is None:
            raise DeployError(f"parameter {name} has no Default and no --param {name}=VALUE was given")
        if not isinstance(raw, (str, int, float)):
            raise DeployError(f"parameter {name}: Default must be a string or a number, got {raw!r}")
        values[name] = check_parameter(name, spec, text(raw))
    return values


def check_parameter(name: str, spec: dict, raw: str):
    """The value of one parameter (a list for CommaDelimitedList), or an error naming it."""
    kind = spec.get("Type")
    fail = lambda why: DeployError(f"parameter {name}={raw!r}: {why}")  # noqa: E731
    if kind == "CommaDelimitedList":
        items = [item.strip() for item in raw.split(",")]
    elif kind in ("String", "Number"):
        items = [raw]
    else:
        raise fail(f"Type {kind} is not handled by tests/deploy/stack.py (String, Number, CommaDelimitedList)")
    for item in items:
        if kind == "Number":
            try:
                number = float(item)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise fail("must be a number")
            if "AllowedValues" in spec and number not in [float(v) for v in spec["AllowedValues"]]:
                raise fail(f"must be one of {spec['AllowedValues']}")
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise fail(f"must be a number not less than {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise fail(f"must be a number not greater than {spec['MaxValue']}")
        elif "AllowedValues" in spec and item not in [text(v) for v in spec["AllowedValues"]]:
            raise fail(f"must be one of {spec['AllowedValues']}")
    if kind == "String":
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], raw):
            raise fail(f"must match pattern {spec['AllowedPattern']}")
        if "MinLength" in spec and len(raw) < int(spec["MinLength"]):
            raise fail(f"must be at least {spec['MinLength']} characters long")
        if "MaxLength" in spec and len(raw) > int(spec["MaxLength"]):
            raise fail(f"must be at most {spec['MaxLength']} characters long")
    return items if kind == "CommaDelimitedList" else raw


def text(value) -> str:
    """A scalar as CloudFormation turns it into a string (booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise IntrinsicError(f"expected a string, got {json.dumps(value)}")


def as_int(value, what: str) -> int:
    try:
        return int(text(value))
    except (ValueError, IntrinsicError):
        raise DeployError(f"{what} must be an integer, got {value!r}") from None


def as_bool(value, what: str) -> bool:
    if not isinstance(value, (bool, str)) or text(value).lower() not in ("true", "false"):
        raise DeployError(f"{what} must be true or false, got {value!r}")
    return text(value).lower() == "true"


# ---------------------------------------------------------------- SAM transform


def sam_transform(template: dict, template_dir: str, raw_parameters: dict, region: str) -> tuple[dict, dict]:
    """(the translated template, {function logical id: absolute local code directory or None}).

    The translator only accepts s3:// code locations, so each function's local CodeUri (its own or
    the Globals one, relative to the template's directory as `sam build` writes it) is recorded and
    replaced by a placeholder object in ARTIFACT_BUCKET.
    """
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    global_code = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    code_dirs = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.setdefault("Properties", {})
        code = props.get("CodeUri", global_code)
        code_dirs[logical_id] = None
        if isinstance(code, str) and not code.startswith("s3://"):
            code_dirs[logical_id] = os.path.abspath(os.path.join(template_dir, code))
            if not os.path.isdir(code_dirs[logical_id]):
                raise DeployError(f"{logical_id}: CodeUri {code!r} is not a directory ({code_dirs[logical_id]})")
            props["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"

    class NoManagedPolicies:  # no network: SAM writes the managed policy ARNs itself
        def load(self):
            return {}

    os.environ["AWS_DEFAULT_REGION"] = region  # the translator reads the region from there
    try:
        return transform(template, raw_parameters, NoManagedPolicies()), code_dirs
    except InvalidDocumentException as error:
        raise DeployError("SAM transform: " + "; ".join(cause.message for cause in error.causes)) from None


# ---------------------------------------------------------------- the stack


@dataclass
class Resource:
    type: str
    emulated: str  # "created" on moto, "recorded" for the Rust tests to emulate, or "not_emulated"
    properties: dict
    metadata: dict
    ref: object = None
    attributes: dict = field(default_factory=dict)


class Stack:
    """Resolves the translated template and creates its resources, each one the first time it is needed."""

    def __init__(self, template: dict, parameters: dict, name: str, region: str, endpoint: str):
        self.template, self.parameters, self.name, self.region = template, parameters, name, region
        self.endpoint = endpoint
        self.account = self.client("sts").get_caller_identity()["Account"]
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": self.account,
            "AWS::StackName": name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{self.account}:stack/{name}/{uuid.uuid4()}",
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NoValue": NOVALUE,
        }
        self.resources: dict[str, Resource] = {}  # in creation order
        self.creating: list[str] = []  # the chain of resources being created, to report cycles
        self.conditions: dict[str, bool] = {}
        self.evaluating_conditions = True  # conditions may not reference resources
        for condition in template.get("Conditions", {}):
            self.condition(condition)
        self.evaluating_conditions = False

    def client(self, service: str):
        """A client of the emulator only: fixed dummy credentials, so no real account is ever touched."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def deploy(self) -> None:
        for logical_id, spec in self.template.get("Resources", {}).items():
            if self.wanted(spec, logical_id):
                self.ensure(logical_id)

    def outputs(self) -> dict:
        """Output values as describe-stacks gives them: strings, a list joined with commas."""
        outputs = {}
        for name, spec in self.template.get("Outputs", {}).items():
            if self.wanted(spec, f"Outputs.{name}"):
                value = self.resolve(spec["Value"], f"Outputs.{name}.Value")
                try:
                    outputs[name] = ",".join(map(text, value)) if isinstance(value, list) else text(value)
                except IntrinsicError as error:
                    raise DeployError(f"Outputs.{name}.Value: {error}") from None
        return outputs

    def wanted(self, spec: dict, where: str) -> bool:
        """Whether a resource or output exists: it has no Condition or its Condition is true."""
        try:
            return "Condition" not in spec or self.condition(spec["Condition"])
        except IntrinsicError as error:
            raise DeployError(f"{where}.Condition: {error}") from None

    def physical_name(self, logical_id: str, limit: int, suffix: str = "") -> str:
        """CloudFormation's generated name, {stack}-{LogicalId}-{12 random characters}, cut to the limit."""
        random_part = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
        return f"{self.name}-{logical_id}"[: limit - len(suffix) - 13] + f"-{random_part}{suffix}"

    # --- conditions and resources

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            expression = self.template.get("Conditions", {}).get(name)
            if expression is None:
                raise IntrinsicError(f"no condition named {name}")
            self.conditions[name] = None  # marks it as being evaluated
            self.conditions[name] = self.truth(expression, f"Conditions.{name}")
        if self.conditions[name] is None:
            raise DeployError(f"Conditions.{name} refers to itself")
        return self.conditions[name]

    def truth(self, expression, path: str) -> bool:
        """A condition function (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition) evaluated."""
        if isinstance(expression, dict) and len(expression) == 1:
            (key, arg), = expression.items()
            try:
                if key == "Fn::Equals":
                    left, right = (self.resolve(side, f"{path}.Fn::Equals") for side in arg)
                    return (left if isinstance(left, list) else text(left)) == \
                           (right if isinstance(right, list) else text(right))
                if key == "Fn::Not":
                    return not self.truth(arg[0], f"{path}.Fn::Not")
                if key == "Fn::And":
                    return all([self.truth(item, f"{path}.Fn::And") for item in arg])
                if key == "Fn::Or":
                    return any([self.truth(item, f"{path}.Fn::Or") for item in arg])
                if key == "Condition":
                    return self.condition(arg)
            except IntrinsicError as error:
                raise DeployError(f"{path}: {key} {json.dumps(arg)}: {error}") from None
        raise DeployError(f"{path}: {json.dumps(expression)} is not a condition function")

    def ensure(self, logical_id: str) -> Resource:
        """The resource, created (with what its properties reference, first) if it was not yet."""
        if logical_id in self.resources:
            return self.resources[logical_id]
        spec = self.template.get("Resources", {}).get(logical_id)
        if spec is None or self.evaluating_conditions:
            raise IntrinsicError(f"no parameter, pseudo parameter or resource named {logical_id}" if spec is None
                                 else f"conditions may not reference resources ({logical_id})")
        if not self.wanted(spec, logical_id):
            raise IntrinsicError(f"resource {logical_id} is not created: its condition {spec['Condition']} is false")
        if logical_id in self.creating:
            cycle = self.creating[self.creating.index(logical_id):] + [logical_id]
            raise DeployError("dependency cycle: " + " -> ".join(cycle))
        self.creating.append(logical_id)
        depends_on = spec.get("DependsOn", [])
        for dependency in [depends_on] if isinstance(depends_on, str) else depends_on:
            try:
                self.ensure(dependency)
            except IntrinsicError as error:
                raise DeployError(f"{logical_id}.DependsOn {dependency}: {error}") from None
        kind = spec.get("Type")
        if kind not in HANDLERS:
            raise DeployError(f"resource type {kind} of {logical_id} is not handled by tests/deploy/stack.py")
        emulated, create = HANDLERS[kind]
        resource = Resource(kind, emulated, self.resolve(spec.get("Properties", {}), f"{logical_id}.Properties"),
                            self.resolve(spec.get("Metadata", {}), f"{logical_id}.Metadata"))
        try:
            resource.ref, resource.attributes = create(self, logical_id, resource.properties)
        except (ClientError, ParamValidationError) as error:
            raise DeployError(f"{logical_id} ({kind}): moto refused it: {error}") from None
        except KeyError as error:
            raise DeployError(f"{logical_id} ({kind}): property {error} is missing") from None
        except (IntrinsicError, TypeError, ValueError) as error:
            raise DeployError(f"{logical_id} ({kind}): malformed properties: {error}") from None
        self.resources[logical_id] = resource
        self.creating.pop()
        return resource

    # --- intrinsic functions

    def resolve(self, node, path: str):
        """The node with every intrinsic function replaced by its value and AWS::NoValue removed."""
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref" or key.startswith("Fn::"):
                    if key not in INTRINSICS:
                        raise DeployError(f"{path}: intrinsic function {key} is not handled by tests/deploy/stack.py")
                    try:
                        return INTRINSICS[key](self, arg, f"{path}.{key}")
                    except IntrinsicError as error:
                        raise DeployError(f"{path}: {key} {json.dumps(arg)}: {error}") from None
                    except (TypeError, ValueError, IndexError, KeyError) as error:  # malformed arguments
                        raise DeployError(f"{path}: {key} {json.dumps(arg)}: malformed ({error!r})") from None
            resolved = {key: self.resolve(value, f"{path}.{key}") for key, value in node.items()}
            return {key: value for key, value in resolved.items() if value is not NOVALUE}
        if isinstance(node, list):
            resolved = [self.resolve(item, f"{path}[{index}]") for index, item in enumerate(node)]
            return [item for item in resolved if item is not NOVALUE]
        return node

    def ref(self, name, path: str):
        if not isinstance(name, str):
            raise IntrinsicError("the name must be a string")
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        resource = self.ensure(name)
        if resource.ref is None:
            raise IntrinsicError(f"{name} ({resource.type}) has no Ref value in tests/deploy/stack.py")
        return resource.ref

    def get_att(self, arg, path: str):
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        attribute = self.resolve(attribute, path)
        resource = self.ensure(logical_id)
        if attribute not in resource.attributes:
            raise IntrinsicError(f"{logical_id} ({resource.type}) has no attribute {attribute} here "
                                 f"(it has: {', '.join(resource.attributes) or 'none'})")
        return resource.attributes[attribute]

    def sub(self, arg, path: str) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], path))

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} stands for ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return text(self.get_att(name, path))
            return text(self.ref(name, path))

        return re.sub(r"\$\{([^}]*)\}", substitute, template)

    def join(self, arg, path: str) -> str:
        delimiter, items = arg
        items = self.resolve(items, path)
        if not isinstance(items, list):
            raise IntrinsicError("the second argument must be a list")
        return text(delimiter).join(text(item) for item in items)

    def if_(self, arg, path: str):
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false, path)

    def find_in_map(self, arg, path: str):
        if len(arg) != 3:
            raise IntrinsicError("expected [MapName, TopLevelKey, SecondLevelKey]")
        level = self.template.get("Mappings", {})
        for depth, key in enumerate(arg):
            key = text(self.resolve(key, path))  # mapping keys are compared as strings
            matches = [value for name, value in level.items() if text(name) == key]
            if not matches:
                raise IntrinsicError(f"{['no mapping', 'no top-level key', 'no second-level key'][depth]} {key!r}")
            level = matches[0]
        return level

    def select(self, arg, path: str):
        index, items = int(text(self.resolve(arg[0], path))), self.resolve(arg[1], path)
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise IntrinsicError(f"index {index} is outside the list")
        return items[index]

    def split(self, arg, path: str) -> list:
        delimiter, source = arg
        return text(self.resolve(source, path)).split(text(delimiter))

    def base64(self, arg, path: str) -> str:
        return base64.b64encode(text(self.resolve(arg, path)).encode()).decode()


INTRINSICS = {
    "Ref": Stack.ref, "Fn::GetAtt": Stack.get_att, "Fn::Sub": Stack.sub, "Fn::Join": Stack.join,
    "Fn::If": Stack.if_, "Fn::FindInMap": Stack.find_in_map, "Fn::Select": Stack.select,
    "Fn::Split": Stack.split, "Fn::Base64": Stack.base64,
}


# ---------------------------------------------------------------- resources created on moto


def only(logical_id: str, props: dict, handled: set) -> None:
    """Refuses properties a creator would otherwise drop silently (what moto's CloudFormation does)."""
    extra = sorted(set(props) - handled)
    if extra:
        raise DeployError(f"{logical_id}: properties {', '.join(extra)} are not handled by tests/deploy/stack.py")


def integers(node):
    """DynamoDB capacity numbers (strings when they come from a Ref) as the integers boto3 requires."""
    if isinstance(node, dict):
        return {key: as_int(value, key) if key.endswith(("CapacityUnits", "RequestUnits")) else integers(value)
                for key, value in node.items()}
    return [integers(item) for item in node] if isinstance(node, list) else node


def create_table(stack: Stack, logical_id: str, props: dict):
    direct = {"AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
              "ProvisionedThroughput", "OnDemandThroughput", "TableClass", "Tags"}
    only(logical_id, props, direct | {"TableName", "SSESpecification", "StreamSpecification",
                                      "TimeToLiveSpecification", "PointInTimeRecoverySpecification"})
    dynamodb = stack.client("dynamodb")
    name = props.get("TableName") or stack.physical_name(logical_id, 255)
    args = {key: integers(value) for key, value in props.items() if key in direct}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        args["SSESpecification"] = {"Enabled": as_bool(sse["SSEEnabled"], "SSEEnabled"),
                                    **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse}}
    if "StreamSpecification" in props:
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    dynamodb.create_table(TableName=name, **args)
    if "TimeToLiveSpecification" in props:
        ttl = props["TimeToLiveSpecification"]
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "AttributeName": ttl["AttributeName"], "Enabled": as_bool(ttl["Enabled"], "TimeToLiveSpecification.Enabled")})
    if "PointInTimeRecoverySpecification" in props:
        enabled = props["PointInTimeRecoverySpecification"].get("PointInTimeRecoveryEnabled", False)
        dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": as_bool(enabled, "PointInTimeRecoveryEnabled")})
    table = dynamodb.describe_table(TableName=name)["Table"]
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return name, attributes


# moto 5.2.5 accepts RedriveAllowPolicy but keeps nothing of it (GetQueueAttributes calls it unknown).
QUEUE_ATTRIBUTES = {"ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue", "FifoThroughputLimit",
                    "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId", "MaximumMessageSize", "MessageRetentionPeriod",
                    "ReceiveMessageWaitTimeSeconds", "RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled",
                    "VisibilityTimeout"}


def create_queue(stack: Stack, logical_id: str, props: dict):
    only(logical_id, props, QUEUE_ATTRIBUTES | {"QueueName", "Tags"})
    fifo = text(props.get("FifoQueue", False)).lower() == "true"
    name = props.get("QueueName") or stack.physical_name(logical_id, 80, ".fifo" if fifo else "")
    attributes = {key: json.dumps(value) if isinstance(value, dict) else text(value)
                  for key, value in props.items() if key in QUEUE_ATTRIBUTES}
    sqs = stack.client("sqs")
    sqs.create_queue(QueueName=name, Attributes=attributes, tags={t["Key"]: t["Value"] for t in props.get("Tags", [])})
    url = f"https://sqs.{stack.region}.{URL_SUFFIX}/{stack.account}/{name}"  # AWS's form; moto accepts it
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}


def generate_secret_string(logical_id: str, spec: dict) -> str:
    """GenerateSecretString as Secrets Manager's GetRandomPassword does it (32 characters by default)."""
    only(f"{logical_id}.GenerateSecretString", spec, {
        "PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation", "ExcludeUppercase",
        "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType"})
    flag = lambda key, default=False: as_bool(spec.get(key, default), key)  # noqa: E731
    classes = [chars for chars, excluded in [(string.ascii_lowercase, flag("ExcludeLowercase")),
                                             (string.ascii_uppercase, flag("ExcludeUppercase")),
                                             (string.digits, flag("ExcludeNumbers")),
                                             (string.punctuation, flag("ExcludePunctuation")),
                                             (" ", not flag("IncludeSpace"))] if not excluded]
    excluded = spec.get("ExcludeCharacters", "")
    classes = [kept for kept in ("".join(c for c in chars if c not in excluded) for chars in classes) if kept]
    length = as_int(spec.get("PasswordLength", 32), "PasswordLength")
    if not classes or (flag("RequireEachIncludedType", True) and length < len(classes)):
        raise DeployError(f"{logical_id}.GenerateSecretString: no password of length {length} fits these exclusions")
    while True:
        password = "".join(secrets.choice("".join(classes)) for _ in range(length))
        if not flag("RequireEachIncludedType", True) or all(set(password) & set(chars) for chars in classes):
            return password


def create_secret(stack: Stack, logical_id: str, props: dict):
    only(logical_id, props, {"Name", "Description", "SecretString", "GenerateSecretString", "KmsKeyId", "Tags"})
    if ("SecretString" in props) == ("GenerateSecretString" in props):
        raise DeployError(f"{logical_id}: give exactly one of SecretString and GenerateSecretString")
    value = props.get("SecretString") or generate_secret_string(logical_id, props["GenerateSecretString"])
    args = {key: props[key] for key in ("Description", "KmsKeyId", "Tags") if key in props}
    arn = stack.client("secretsmanager").create_secret(
        Name=props.get("Name") or stack.physical_name(logical_id, 512), SecretString=value, **args)["ARN"]
    return arn, {"Id": arn}


def create_role(stack: Stack, logical_id: str, props: dict):
    only(logical_id, props, {"RoleName", "Path", "AssumeRolePolicyDocument", "Description", "MaxSessionDuration",
                             "PermissionsBoundary", "Policies", "ManagedPolicyArns", "Tags"})
    iam = stack.client("iam")
    name = props.get("RoleName") or stack.physical_name(logical_id, 64)
    args = {key: props[key] for key in ("Path", "Description", "PermissionsBoundary", "Tags") if key in props}
    if "MaxSessionDuration" in props:
        args["MaxSessionDuration"] = as_int(props["MaxSessionDuration"], "MaxSessionDuration")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                           **args)["Role"]
    for policy in props.get("Policies", []):
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                            PolicyDocument=json.dumps(policy["PolicyDocument"]))
    for arn in props.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        except ClientError as error:  # moto does not know the AWS-managed policies: they stay recorded only
            if error.response["Error"]["Code"] != "NoSuchEntity" or not arn.startswith(f"arn:{PARTITION}:iam::aws:policy/"):
                raise
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def create_log_group(stack: Stack, logical_id: str, props: dict):
    only(logical_id, props, {"LogGroupName", "RetentionInDays", "KmsKeyId"})
    logs = stack.client("logs")
    name = props.get("LogGroupName") or stack.physical_name(logical_id, 512)
    extra = {"kmsKeyId": props["KmsKeyId"]} if "KmsKeyId" in props else {}
    logs.create_log_group(logGroupName=name, **extra)
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=as_int(props["RetentionInDays"], "RetentionInDays"))
    return name, {"Arn": f"arn:{PARTITION}:logs:{stack.region}:{stack.account}:log-group:{name}:*"}


# ---------------------------------------------------------------- resources only recorded


def arn(stack: Stack, service: str, resource: str) -> str:
    return f"arn:{PARTITION}:{service}:{stack.region}:{stack.account}:{resource}"


def record_function(stack: Stack, logical_id: str, props: dict):
    name = props.get("FunctionName") or stack.physical_name(logical_id, 64)
    return name, {"Arn": arn(stack, "lambda", f"function:{name}")}


def record_api(stack: Stack, logical_id: str, props: dict):
    api_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    return api_id, {"ApiId": api_id, "ApiEndpoint": f"https://{api_id}.execute-api.{stack.region}.{URL_SUFFIX}"}


def record_topic(stack: Stack, logical_id: str, props: dict):
    fifo = text(props.get("FifoTopic", False)).lower() == "true"
    name = props.get("TopicName") or stack.physical_name(logical_id, 256, ".fifo" if fifo else "")
    return arn(stack, "sns", name), {"TopicArn": arn(stack, "sns", name), "TopicName": name}


def record_alarm(stack: Stack, logical_id: str, props: dict):
    name = props.get("AlarmName") or stack.physical_name(logical_id, 255)
    return name, {"Arn": arn(stack, "cloudwatch", f"alarm:{name}")}


def record_key(stack: Stack, logical_id: str, props: dict):
    key_id = str(uuid.uuid4())
    return key_id, {"Arn": arn(stack, "kms", f"key/{key_id}"), "KeyId": key_id}


def record_mapping(stack: Stack, logical_id: str, props: dict):
    mapping_id = str(uuid.uuid4())
    return mapping_id, {"Id": mapping_id,
                        "EventSourceMappingArn": arn(stack, "lambda", f"event-source-mapping:{mapping_id}")}


HANDLERS = {
    "AWS::DynamoDB::Table": ("created", create_table),
    "AWS::SQS::Queue": ("created", create_queue),
    "AWS::SecretsManager::Secret": ("created", create_secret),
    "AWS::IAM::Role": ("created", create_role),
    "AWS::Logs::LogGroup": ("created", create_log_group),
    "AWS::Lambda::Function": ("recorded", record_function),
    "AWS::Lambda::EventSourceMapping": ("recorded", record_mapping),
    "AWS::Lambda::Permission": ("recorded", lambda stack, logical_id, props: (None, {})),
    "AWS::ApiGatewayV2::Api": ("recorded", record_api),
    "AWS::ApiGatewayV2::Stage": ("recorded", lambda stack, logical_id, props: (props["StageName"], {})),
    "AWS::SNS::Topic": ("not_emulated", record_topic),
    "AWS::SNS::Subscription": ("not_emulated", lambda stack, logical_id, props: (
        f"{props['TopicArn']}:{uuid.uuid4()}", {})),
    "AWS::CloudWatch::Alarm": ("not_emulated", record_alarm),
    "AWS::CloudWatch::Dashboard": ("not_emulated", lambda stack, logical_id, props: (
        props.get("DashboardName") or stack.physical_name(logical_id, 255), {})),
    "AWS::KMS::Key": ("not_emulated", record_key),
    "AWS::KMS::Alias": ("not_emulated", lambda stack, logical_id, props: (props["AliasName"], {})),
}


# ---------------------------------------------------------------- manifest


def manifest(stack: Stack, code_dirs: dict) -> dict:
    of_type = lambda kind: {lid: r for lid, r in stack.resources.items() if r.type == kind}  # noqa: E731
    roles = of_type("AWS::IAM::Role")
    functions = of_type("AWS::Lambda::Function")
    return {
        "stack_name": stack.name, "region": stack.region, "account_id": stack.account,
        "parameters": stack.parameters,
        "resources": {lid: {"type": r.type, "ref": r.ref, "attributes": r.attributes, "emulated": r.emulated}
                      for lid, r in stack.resources.items()},
        "functions": {lid: function_entry(lid, r, roles, code_dirs.get(lid)) for lid, r in functions.items()},
        "roles": {lid: {"name": r.ref, "arn": r.attributes["Arn"], "metadata": r.metadata} for lid, r in roles.items()},
        "event_source_mappings": [event_source_mapping_entry(lid, r, functions)
                                  for lid, r in of_type("AWS::Lambda::EventSourceMapping").items()],
        "http_apis": [http_api_entry(lid, r, functions, of_type("AWS::ApiGatewayV2::Stage"))
                      for lid, r in of_type("AWS::ApiGatewayV2::Api").items()],
        "outputs": stack.outputs(),
        "not_emulated": [{"logical_id": lid, "type": r.type} for lid, r in stack.resources.items()
                         if r.emulated == "not_emulated"],
    }


def function_entry(logical_id: str, function: Resource, roles: dict, code_dir) -> dict:
    """What the Rust test starts the function's binary with; Lambda's documented defaults where absent."""
    props, where = function.properties, f"{logical_id}.Properties"
    role_arn = props["Role"]
    role_id = next((lid for lid, role in roles.items() if role.attributes["Arn"] == role_arn), None)
    role_props = roles[role_id].properties if role_id else {}
    logging = props.get("LoggingConfig", {})
    concurrency = props.get("ReservedConcurrentExecutions")
    try:
        environment = {key: text(value) for key, value in props.get("Environment", {}).get("Variables", {}).items()}
    except IntrinsicError as error:
        raise DeployError(f"{where}.Environment.Variables: {error}") from None
    return {
        "binary": function.metadata.get("BuildProperties", {}).get("Binary"),
        "code_dir": code_dir,
        "name": function.ref, "arn": function.attributes["Arn"],
        "handler": props.get("Handler"), "runtime": props.get("Runtime"),
        "architectures": props.get("Architectures", ["x86_64"]),
        "timeout": as_int(props.get("Timeout", 3), f"{where}.Timeout"),
        "memory_size": as_int(props.get("MemorySize", 128), f"{where}.MemorySize"),
        "reserved_concurrency": None if concurrency is None
        else as_int(concurrency, f"{where}.ReservedConcurrentExecutions"),
        "environment": environment,
        "logging": {"log_format": logging.get("LogFormat"), "application_log_level": logging.get("ApplicationLogLevel"),
                    "system_log_level": logging.get("SystemLogLevel"), "log_group": logging.get("LogGroup")},
        "tracing": props.get("TracingConfig", {}).get("Mode"),
        "role_arn": role_arn, "role_logical_id": role_id,
        "policies": [{"name": p["PolicyName"], "document": p["PolicyDocument"]} for p in role_props.get("Policies", [])],
        "managed_policy_arns": role_props.get("ManagedPolicyArns", []),
        "metadata": function.metadata,
    }


def function_named(reference: str, functions: dict, what: str) -> str:
    """The logical id of the stack's function a name, ARN or qualified ARN designates."""
    for lid, function in functions.items():
        arn_ = function.attributes["Arn"]
        if reference in (function.ref, arn_) or reference.startswith(arn_ + ":"):
            return lid
    raise DeployError(f"{what} names {reference!r}, which is no function of this stack")


def event_source_mapping_entry(logical_id: str, mapping: Resource, functions: dict) -> dict:
    props, where = mapping.properties, f"{logical_id}.Properties"
    source = props.get("EventSourceArn")
    concurrency = props.get("ScalingConfig", {}).get("MaximumConcurrency")
    return {
        "logical_id": logical_id,
        "function": function_named(props["FunctionName"], functions, f"{where}.FunctionName"),
        "event_source_arn": source,
        # Lambda's defaults: 10 messages for SQS, 100 for the other sources; no batching window; enabled.
        "batch_size": as_int(props.get("BatchSize", 10 if ":sqs:" in (source or "") else 100), f"{where}.BatchSize"),
        "maximum_batching_window_seconds": as_int(props.get("MaximumBatchingWindowInSeconds", 0),
                                                  f"{where}.MaximumBatchingWindowInSeconds"),
        "function_response_types": props.get("FunctionResponseTypes", []),
        "maximum_concurrency": None if concurrency is None
        else as_int(concurrency, f"{where}.ScalingConfig.MaximumConcurrency"),
        "enabled": as_bool(props.get("Enabled", True), f"{where}.Enabled"),
    }


METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "x-amazon-apigateway-any-method"}


def authorization(security, schemes: dict, where: str) -> str:
    """The route's authorization type from the security schemes its OpenAPI operation names."""
    kinds = set()
    for requirement in security or []:
        for name in requirement:
            scheme = schemes.get(name)
            if scheme is None:
                raise DeployError(f"{where}: security names {name}, which components.securitySchemes lacks")
            authorizer_type = scheme.get("x-amazon-apigateway-authorizer", {}).get("type")
            if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4":
                kinds.add("AWS_IAM")
            elif authorizer_type == "jwt":
                kinds.add("JWT")
            elif authorizer_type in ("request", "token"):
                kinds.add("CUSTOM")
            else:
                raise DeployError(f"{where}: security scheme {name} is of no kind HTTP APIs know")
    if len(kinds) > 1:
        raise DeployError(f"{where}: an HTTP API route has one authorizer, its security names {sorted(kinds)}")
    return kinds.pop() if kinds else "NONE"


def http_api_entry(logical_id: str, api: Resource, functions: dict, stages: dict) -> dict:
    """Routes read from the API's OpenAPI Body, where SAM puts the functions' HttpApi events."""
    body = api.properties.get("Body")
    if body is None:
        raise DeployError(f"{logical_id}: only an HttpApi defined by an OpenAPI Body is handled by tests/deploy/stack.py")
    schemes = body.get("components", {}).get("securitySchemes", {})
    routes = []
    for path, operations in body.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            where = f"{logical_id}.Properties.Body.paths.{path}.{method}"
            integration = operation.get("x-amazon-apigateway-integration")
            target = re.search(r"functions/(.+)/invocations$", (integration or {}).get("uri", ""))
            if not target:
                raise DeployError(f"{where}: no Lambda integration (x-amazon-apigateway-integration.uri)")
            routes.append({
                "method": "ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                "path": path,
                "function": function_named(target.group(1), functions, f"{where}.x-amazon-apigateway-integration.uri"),
                "authorization": authorization(operation.get("security", body.get("security")), schemes, where),
                "payload_format_version": integration.get("payloadFormatVersion"),
            })
    own_stages = [stage for stage in stages.values() if stage.properties.get("ApiId") == api.ref]
    if len(own_stages) > 1:
        raise DeployError(f"{logical_id}: more than one stage; tests/deploy/stack.py emulates one")
    settings = own_stages[0].properties if own_stages else {}
    return {"logical_id": logical_id, "id": api.ref, "routes": routes,
            "default_route_settings": settings.get("DefaultRouteSettings", {}),
            "route_settings": settings.get("RouteSettings", {})}


# ---------------------------------------------------------------- delete


GONE = {"ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NoSuchEntity"}


def delete_role(iam, name: str) -> None:
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName=name)


DELETERS = {
    "AWS::DynamoDB::Table": ("dynamodb", lambda c, ref: c.delete_table(TableName=ref)),
    "AWS::SQS::Queue": ("sqs", lambda c, ref: c.delete_queue(QueueUrl=ref)),
    "AWS::SecretsManager::Secret": ("secretsmanager", lambda c, ref: c.delete_secret(
        SecretId=ref, ForceDeleteWithoutRecovery=True)),
    "AWS::IAM::Role": ("iam", delete_role),
    "AWS::Logs::LogGroup": ("logs", lambda c, ref: c.delete_log_group(logGroupName=ref)),
}


def delete(resources: dict, endpoint: str, region: str) -> None:
    """Deletes what deploy created on moto, newest first; what is already gone is skipped."""
    for resource in reversed(list(resources.values())):
        if resource["emulated"] != "created":
            continue
        service, remove = DELETERS[resource["type"]]
        client = boto3.client(service, endpoint_url=endpoint, region_name=region,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            remove(client, resource["ref"])
        except ClientError as error:
            if error.response["Error"]["Code"] not in GONE:
                raise


# ---------------------------------------------------------------- command line


def deploy(args) -> dict:
    from samtranslator.yaml_helper import yaml_parse

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", args.stack_name):
        raise DeployError(f"stack name {args.stack_name!r}: up to 128 letters, digits and hyphens, starting with a letter")
    overrides = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or key in overrides:
            raise DeployError(f"--param {item!r}: expected KEY=VALUE, each KEY once")
        overrides[key] = value
    with open(args.template) as source:
        template = yaml_parse(source.read())
    parameters = resolve_parameters(template.get("Parameters", {}), overrides)
    code_dirs = {}
    if "Transform" in template:
        raw = {name: ",".join(value) if isinstance(value, list) else value for name, value in parameters.items()}
        template, code_dirs = sam_transform(template, os.path.dirname(os.path.abspath(args.template)), raw, args.region)
    stack = Stack(template, parameters, args.stack_name, args.region, args.endpoint)
    try:
        stack.deploy()
        return manifest(stack, code_dirs)
    except BaseException:  # roll back what was created, as CloudFormation does
        delete({lid: {"type": r.type, "ref": r.ref, "emulated": r.emulated} for lid, r in stack.resources.items()},
               args.endpoint, args.region)
        raise


def assume(args) -> dict:
    """Temporary credentials of a role from moto's STS, as Lambda assumes a function's role."""
    sts = boto3.client("sts", endpoint_url=args.endpoint, region_name=args.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    answer = sts.assume_role(RoleArn=args.role_arn, RoleSessionName=args.session_name)
    credentials = answer["Credentials"]
    return {
        "access_key_id": credentials["AccessKeyId"],
        "secret_access_key": credentials["SecretAccessKey"],
        "session_token": credentials["SessionToken"],
        "principal": answer["AssumedRoleUser"]["Arn"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    deploy_parser = commands.add_parser("deploy", help="deploy the template to moto and print the manifest")
    deploy_parser.add_argument("--template", required=True)
    deploy_parser.add_argument("--endpoint", required=True, help="the moto server, e.g. http://127.0.0.1:5000")
    deploy_parser.add_argument("--stack-name", required=True)
    deploy_parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    deploy_parser.add_argument("--region", default="us-east-1")
    delete_parser = commands.add_parser("delete", help="delete what a manifest (on stdin) created")
    delete_parser.add_argument("--endpoint", required=True)
    assume_parser = commands.add_parser("assume", help="print a role's temporary credentials")
    assume_parser.add_argument("--endpoint", required=True)
    assume_parser.add_argument("--role-arn", required=True)
    assume_parser.add_argument("--session-name", required=True)
    assume_parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    try:
        if args.command == "deploy":
            json.dump(deploy(args), sys.stdout, indent=2)
            print()
        elif args.command == "assume":
            json.dump(assume(args), sys.stdout)
            print()
        else:
            try:
                deployed = json.load(sys.stdin)
                resources, region = deployed["resources"], deployed["region"]
            except (ValueError, KeyError, TypeError) as error:
                raise DeployError(f"stdin is not a manifest from stack.py deploy ({error!r})") from None
            delete(resources, args.endpoint, region)
    except (DeployError, BotoCoreError, ClientError) as error:
        print(f"stack.py {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
