"""template.yaml evaluated for sets of parameters: the event source mappings and IAM statements each yields.

A small evaluator of the CloudFormation intrinsics the template uses (Ref, Fn::If with Conditions,
Fn::Equals/Not/And/Or/Contains, Fn::Sub, Fn::Join, Fn::Split, Fn::Select, AWS::NoValue removal, Rules)
resolves the template the way CloudFormation would for given parameter values; Fn::GetAtt and Refs to
resources stay symbolic (``GetAtt:FailureQueue.Arn``, ``Ref:EventSource1``). The last test checks the
resolved mappings against cfn-lint's own resource schema (from ``.tools``, run as a subprocess).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "template.yaml"
TOOLS_PYTHON = ROOT / ".tools" / "bin" / "python"

CLUSTER = "arn:aws:kafka:us-east-1:123456789012:cluster/dev/0000-uuid-1"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::StackName": "influx-sink-test"}


class _NoValue:
    """AWS::NoValue: the property or list item disappears."""


NO_VALUE = _NoValue()


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !If, !Sub, ...) as their long forms."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def load_template() -> dict[str, Any]:
    with TEMPLATE.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)


@dataclass
class Stack:
    """The template resolved for one parameter set."""

    resources: dict[str, dict[str, Any]]
    outputs: dict[str, Any]
    rule_failures: list[str]

    def mappings(self) -> dict[str, dict[str, Any]]:
        return {name: r["Properties"] for name, r in self.resources.items()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"}

    def policies(self) -> dict[str, list[dict[str, Any]]]:
        role = self.resources["InfluxSinkRole"]["Properties"]
        return {p["PolicyName"]: p["PolicyDocument"]["Statement"] for p in role["Policies"]}

    def statements_with(self, action: str) -> list[dict[str, Any]]:
        return [s for statements in self.policies().values() for s in statements
                if action in _as_list(s["Action"])]

    def env(self) -> dict[str, str]:
        return self.resources["InfluxSinkFunction"]["Properties"]["Environment"]["Variables"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class Evaluator:
    def __init__(self, template: dict[str, Any], overrides: dict[str, str]) -> None:
        self.template = template
        unknown = set(overrides) - set(template["Parameters"])
        assert not unknown, f"not template parameters: {unknown}"
        self.params: dict[str, Any] = {}
        for name, spec in template["Parameters"].items():
            if name in overrides:
                raw = overrides[name]
            else:
                assert "Default" in spec, f"required parameter {name} not given"
                raw = str(spec["Default"])
            if "AllowedValues" in spec:
                assert raw in [str(v) for v in spec["AllowedValues"]], f"{name}={raw!r} not allowed"
            if "AllowedPattern" in spec:
                each = raw.split(",") if spec["Type"] == "CommaDelimitedList" else [raw]
                assert all(re.fullmatch(spec["AllowedPattern"], v) for v in each), f"{name}={raw!r} not allowed"
            self.params[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return f"Ref:{name}"

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".")[0] in self.template["Resources"]:
                return f"GetAtt:{name}"
            value = self.ref(name)
            assert isinstance(value, str), f"${{{name}}} is not a string"
            return value
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Fn::Contains":
                return str(self.value(arg[1])) in [str(v) for v in self.value(arg[0])]
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
            if key == "Fn::Split":
                return str(self.value(arg[1])).split(arg[0])
            if key == "Fn::Select":
                items = self.value(arg[1])
                index = int(self.value(arg[0]))
                assert index < len(items), f"Fn::Select {index} of {items}"
                return items[index]
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], {k: self.value(v) for k, v in arg[1].items()})
            if key == "Fn::GetAtt":
                return f"GetAtt:{arg[0]}.{arg[1]}"
            if key == "Fn::FindInMap":
                mapping, top, second = (self.value(a) for a in arg)
                return self.template["Mappings"][mapping][top][second]
            assert not key.startswith("Fn::"), f"the evaluator does not know {key}"
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def stack(self) -> Stack:
        resources = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            resources[name] = {"Type": resource["Type"],
                               "Properties": self.value(resource.get("Properties", {}))}
        outputs = {name: self.value(o["Value"]) for name, o in self.template["Outputs"].items()
                   if "Condition" not in o or self.condition(o["Condition"])}
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            failures += [a["AssertDescription"] for a in rule["Assertions"] if not self.value(a["Assert"])]
        return Stack(resources, outputs, failures)


REQUIRED = {"Kcql": "INSERT INTO m SELECT * FROM influx-topic", "InfluxUrl": "http://influx:8086"}
MSK = {**REQUIRED, "Topics": "influx-topic", "MskClusterArn": CLUSTER}
SELF_MANAGED = {**REQUIRED, "Topics": "influx-topic", "SourceType": "SelfManagedKafka",
                "KafkaBootstrapServers": "b1:9096,b2:9096", "KafkaSecretArn": SECRET}


def evaluate(**overrides: str) -> Stack:
    return Evaluator(load_template(), overrides).stack()


def deployable(**overrides: str) -> Stack:
    stack = evaluate(**overrides)
    assert stack.rule_failures == []
    return stack


def only_mapping(stack: Stack) -> dict[str, Any]:
    mappings = stack.mappings()
    assert list(mappings) == ["EventSource1"]
    return mappings["EventSource1"]


# ---------------------------------------------------------------- defaults


@pytest.mark.parametrize("source", [MSK, SELF_MANAGED], ids=["msk", "self-managed"])
def test_defaults_are_provisioned_with_every_error_handling_control(source: dict[str, str]) -> None:
    stack = deployable(**source)
    esm = only_mapping(stack)
    assert esm["ProvisionedPollerConfig"] == {"MinimumPollers": "1"}
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["MaximumRetryAttempts"] == "10"
    assert esm["MaximumRecordAgeInSeconds"] == "-1"
    assert esm["BisectBatchOnFunctionError"] == "false"
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": "GetAtt:FailureQueue.Arn"}}
    assert esm["Topics"] == ["influx-topic"]
    assert esm["StartingPosition"] == "TRIM_HORIZON"
    for absent in ("StartingPositionTimestamp", "FilterCriteria", "MetricsConfig"):
        assert absent not in esm
    assert "FailureQueue" in stack.resources
    assert stack.policies()["OnFailureDestination"] == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "GetAtt:FailureQueue.Arn"}]
    assert stack.env()["CONNECT_INFLUX_TOPICS"] == "influx-topic"
    assert stack.env()["CONNECT_INFLUX_MAX_RETRIES"] == "10"
    for absent_policy in ("ReadInfluxCredentials", "EventSourceGlueSchemaRegistry",
                          "EventSourceSchemaRegistryCredentials", "DecryptSecureStringsAndSecrets"):
        assert absent_policy not in stack.policies()
    assert "TopicsHoldsMoreThanTenTopics" not in stack.resources


@pytest.mark.parametrize(("level", "lambda_level"), [("DEBUG", "DEBUG"), ("INFO", "INFO"), ("WARNING", "WARN")])
def test_logs_are_json_at_the_loggers_level(level: str, lambda_level: str) -> None:
    """The runtime's own records are JSON too, and Lambda's level filter is the Logger's level."""
    function = deployable(**MSK, LogLevel=level).resources["InfluxSinkFunction"]["Properties"]
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["LoggingConfig"]["ApplicationLogLevel"] == lambda_level
    assert function["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == level


def test_msk_mapping_names_the_cluster_and_no_self_managed_parts() -> None:
    stack = deployable(**MSK)
    esm = only_mapping(stack)
    assert esm["EventSourceArn"] == CLUSTER
    for absent in ("SelfManagedEventSource", "SelfManagedKafkaEventSourceConfig", "SourceAccessConfigurations",
                   "AmazonManagedKafkaEventSourceConfig"):
        assert absent not in esm
    (read,) = stack.statements_with("kafka-cluster:ReadData")
    assert read["Resource"] == ["arn:aws:kafka:us-east-1:123456789012:topic/dev/0000-uuid-1/influx-topic"]
    assert stack.statements_with("kafka-cluster:WriteData") == []


def test_self_managed_mapping_names_the_brokers_and_the_secret() -> None:
    stack = deployable(**SELF_MANAGED)
    esm = only_mapping(stack)
    assert "EventSourceArn" not in esm
    assert esm["SelfManagedEventSource"] == {"Endpoints": {"KafkaBootstrapServers": ["b1:9096", "b2:9096"]}}
    assert esm["SourceAccessConfigurations"] == [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}]
    assert stack.policies()["KafkaCredentials"] == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET}]
    assert "MskEventSource" not in stack.policies()


# ---------------------------------------------------------------- destinations


DESTINATIONS = {
    "sqs": ("arn:aws:sqs:us-east-1:123456789012:dlq",
            [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:123456789012:dlq"}]),
    "sns": ("arn:aws:sns:us-east-1:123456789012:failed",
            [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:aws:sns:us-east-1:123456789012:failed"}]),
    "s3": ("arn:aws:s3:::failed-batches",
           [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::failed-batches"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::failed-batches/*"}]),
}


@pytest.mark.parametrize("kind", sorted(DESTINATIONS))
@pytest.mark.parametrize("source", [MSK, SELF_MANAGED], ids=["msk", "self-managed"])
def test_existing_destination_gets_exactly_its_own_actions(kind: str, source: dict[str, str]) -> None:
    arn, statements = DESTINATIONS[kind]
    stack = deployable(**source, OnFailureDestinationArn=arn)
    esm = only_mapping(stack)
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": arn}}
    assert stack.policies()["OnFailureDestination"] == statements
    assert "FailureQueue" not in stack.resources
    assert "FailureQueueDepthAlarm" not in stack.resources
    for other in ("sqs:SendMessage", "sns:Publish", "s3:PutObject", "kafka-cluster:WriteData"):
        if not any(other == s["Action"] for s in statements):
            assert stack.statements_with(other) == []


def test_kafka_topic_destination_with_msk_iam_may_write_that_topic_only() -> None:
    stack = deployable(**MSK, OnFailureDestinationArn="kafka://influx-dlt")
    esm = only_mapping(stack)
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": "kafka://influx-dlt"}}
    assert "OnFailureDestination" not in stack.policies()
    assert "FailureQueue" not in stack.resources
    (write,) = stack.statements_with("kafka-cluster:WriteData")
    assert write == {"Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                     "Resource": "arn:aws:kafka:us-east-1:123456789012:topic/dev/0000-uuid-1/influx-dlt"}


@pytest.mark.parametrize("source", [{**MSK, "MskAuthentication": "SASL_SCRAM_512", "KafkaSecretArn": SECRET},
                                    SELF_MANAGED], ids=["msk-scram", "self-managed"])
def test_kafka_topic_destination_without_iam_auth_needs_no_policy(source: dict[str, str]) -> None:
    stack = deployable(**source, OnFailureDestinationArn="kafka://influx-dlt")
    assert only_mapping(stack)["DestinationConfig"] == {"OnFailure": {"Destination": "kafka://influx-dlt"}}
    assert "OnFailureDestination" not in stack.policies()
    assert stack.statements_with("kafka-cluster:WriteData") == []
    assert stack.statements_with("sqs:SendMessage") == []


# ---------------------------------------------------------------- error-handling controls


def test_bisect_and_record_age() -> None:
    esm = only_mapping(deployable(**MSK, BisectBatchOnError="true", MaximumRecordAgeSeconds="3600",
                                  MaxRetries="3"))
    assert esm["BisectBatchOnFunctionError"] == "true"
    assert esm["MaximumRecordAgeInSeconds"] == "3600"
    assert esm["MaximumRetryAttempts"] == "3"


@pytest.mark.parametrize("age", ["0", "1", "59"])
def test_record_age_below_sixty_is_refused(age: str) -> None:
    failures = evaluate(**MSK, MaximumRecordAgeSeconds=age).rule_failures
    assert failures == ["MaximumRecordAgeSeconds is -1 (never) or 60 to 604800."]


def test_poller_limits_and_group() -> None:
    esm = only_mapping(deployable(**MSK, MinimumPollers="2", MaximumPollers="8", PollerGroupName="influx-pool"))
    assert esm["ProvisionedPollerConfig"] == {"MinimumPollers": "2", "MaximumPollers": "8",
                                              "PollerGroupName": "influx-pool"}


def test_on_demand_mode_leaves_out_the_provisioned_controls() -> None:
    stack = deployable(**MSK, MinimumPollers="0", MaxRetries="-1")
    esm = only_mapping(stack)
    for absent in ("ProvisionedPollerConfig", "FunctionResponseTypes", "MaximumRetryAttempts",
                   "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError"):
        assert absent not in esm
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": "GetAtt:FailureQueue.Arn"}}


@pytest.mark.parametrize(("setting", "reason"), [
    ({"ErrorPolicy": "RETRY"}, "has no partial batch response"),
    ({"MaxRetries": "10"}, "has no retry limit"),
    ({"BisectBatchOnError": "true"}, "BisectBatchOnError needs provisioned mode"),
    ({"MaximumRecordAgeSeconds": "600"}, "MaximumRecordAgeSeconds needs provisioned mode"),
    ({"EsmSchemaRegistryUri": "https://sr.example.com"}, "EsmSchemaRegistryUri"),
    ({"PollerGroupName": "pool"}, "PollerGroupName needs provisioned mode"),
    ({"MaximumPollers": "5"}, "MaximumPollers is a provisioned-mode setting"),
])
def test_on_demand_mode_refuses_what_it_would_ignore(setting: dict[str, str], reason: str) -> None:
    params = {**MSK, "MinimumPollers": "0", "MaxRetries": "-1", **setting}
    failures = evaluate(**params).rule_failures
    assert len(failures) == 1
    assert reason in failures[0]


def test_starting_at_a_timestamp() -> None:
    esm = only_mapping(deployable(**MSK, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp="1767225600"))
    assert esm["StartingPosition"] == "AT_TIMESTAMP"
    assert esm["StartingPositionTimestamp"] == "1767225600"
    failures = evaluate(**MSK, StartingPosition="AT_TIMESTAMP").rule_failures
    assert failures == ["StartingPosition AT_TIMESTAMP needs StartingPositionTimestamp (Unix seconds)."]
    assert "StartingPositionTimestamp" not in only_mapping(deployable(**MSK, StartingPositionTimestamp="5"))


def test_filter_patterns_and_metrics() -> None:
    patterns = ['{"value": {"kind": ["cpu"]}}', '{"value": {"kind": ["mem"], "n": [{"numeric": [">", 0]}]}}']
    stack = deployable(**MSK, FilterPatterns=" ;; ".join(patterns), EsmMetrics="EventCount,ErrorCount,KafkaMetrics")
    esm = only_mapping(stack)
    assert esm["FilterCriteria"] == {"Filters": [{"Pattern": p} for p in patterns]}
    assert esm["MetricsConfig"] == {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]}
    assert "FilterPatternsHoldsMoreThanFivePatterns" not in stack.resources
    five = deployable(**MSK, FilterPatterns=" ;; ".join([f'{{"value": {{"n": [{i}]}}}}' for i in range(5)]))
    assert len(only_mapping(five)["FilterCriteria"]["Filters"]) == 5
    six = deployable(**MSK, FilterPatterns=" ;; ".join([f'{{"value": {{"n": [{i}]}}}}' for i in range(6)]))
    assert "FilterPatternsHoldsMoreThanFivePatterns" in six.resources


# ---------------------------------------------------------------- several topics


@pytest.mark.parametrize("source", [MSK, SELF_MANAGED], ids=["msk", "self-managed"])
def test_three_topics_three_mappings_each_with_its_own_consumer_group(source: dict[str, str]) -> None:
    stack = deployable(**{**source, "Topics": "cpu,mem.v2,disk_io", "ConsumerGroupId": "influx-sink"})
    mappings = stack.mappings()
    assert sorted(mappings) == ["EventSource1", "EventSource2", "EventSource3"]
    config = "AmazonManagedKafkaEventSourceConfig" if source is MSK else "SelfManagedKafkaEventSourceConfig"
    for name, topic in zip(["EventSource1", "EventSource2", "EventSource3"], ["cpu", "mem.v2", "disk_io"],
                           strict=True):
        esm = mappings[name]
        assert esm["Topics"] == [topic]
        assert esm[config] == {"ConsumerGroupId": f"influx-sink-{topic}"}
        assert esm["ProvisionedPollerConfig"] == {"MinimumPollers": "1"}
        assert esm["MaximumRetryAttempts"] == "10"
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["DestinationConfig"] == {"OnFailure": {"Destination": "GetAtt:FailureQueue.Arn"}}
        assert esm["StartingPosition"] == "TRIM_HORIZON"
        if source is MSK:
            assert esm["EventSourceArn"] == CLUSTER
        else:
            assert esm["SourceAccessConfigurations"] == [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}]
    assert stack.env()["CONNECT_INFLUX_TOPICS"] == "cpu,mem.v2,disk_io"
    assert stack.outputs["EventSourceMappingIds"] == "Ref:EventSource1,Ref:EventSource2,Ref:EventSource3"
    if source is MSK:
        (read,) = stack.statements_with("kafka-cluster:ReadData")
        prefix = "arn:aws:kafka:us-east-1:123456789012:topic/dev/0000-uuid-1/"
        assert read["Resource"] == [prefix + "cpu", prefix + "mem.v2", prefix + "disk_io"]


def test_a_single_topic_keeps_the_consumer_group_as_given() -> None:
    esm = only_mapping(deployable(**MSK, ConsumerGroupId="connect-influx-sink"))
    assert esm["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "connect-influx-sink"}


def test_ten_topics_fit_eleven_fail_the_deployment() -> None:
    ten = deployable(**{**MSK, "Topics": ",".join(f"t{i}" for i in range(10))})
    assert len(ten.mappings()) == 10
    assert ten.mappings()["EventSource10"]["Topics"] == ["t9"]
    assert "TopicsHoldsMoreThanTenTopics" not in ten.resources
    eleven = deployable(**{**MSK, "Topics": ",".join(f"t{i}" for i in range(11))})
    assert "TopicsHoldsMoreThanTenTopics" in eleven.resources
    assert eleven.resources["TopicsHoldsMoreThanTenTopics"]["Type"] == "AWS::CloudFormation::WaitCondition"


# ---------------------------------------------------------------- the event source's schema registry


GLUE_REGISTRY = "arn:aws:glue:eu-west-1:123456789012:registry/influx"


@pytest.mark.parametrize("source", [MSK, SELF_MANAGED], ids=["msk", "self-managed"])
def test_glue_schema_registry_on_the_event_source(source: dict[str, str]) -> None:
    stack = deployable(**source, EsmSchemaRegistryUri=GLUE_REGISTRY)
    esm = only_mapping(stack)
    config = "AmazonManagedKafkaEventSourceConfig" if source is MSK else "SelfManagedKafkaEventSourceConfig"
    assert esm[config] == {"SchemaRegistryConfig": {
        "SchemaRegistryURI": GLUE_REGISTRY, "EventRecordFormat": "JSON",
        "SchemaValidationConfigs": [{"Attribute": "VALUE"}]}}
    assert stack.policies()["EventSourceGlueSchemaRegistry"] == [{
        "Effect": "Allow", "Action": ["glue:GetRegistry", "glue:GetSchemaVersion"],
        "Resource": [GLUE_REGISTRY, "arn:aws:glue:eu-west-1:123456789012:schema/influx/*"]}]
    assert "EventSourceSchemaRegistryCredentials" not in stack.policies()
    # SOURCE records of Glue-registered Avro are read with the registry's region.
    assert stack.env()["CONNECT_INFLUX_GLUE_REGION"] == "eu-west-1"


def test_confluent_schema_registry_with_credentials_and_source_format() -> None:
    url = "https://sr.example.com:8081"
    ca = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sr-ca"
    stack = deployable(**MSK, ConsumerGroupId="g", EsmSchemaRegistryUri=url, EsmSchemaRecordFormat="SOURCE",
                       EsmSchemaValidate="KEY,VALUE", EsmSchemaRegistryAuth="BASIC_AUTH",
                       EsmSchemaRegistrySecretArn=SECRET, EsmSchemaRegistryRootCaSecretArn=ca)
    esm = only_mapping(stack)
    assert esm["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "g", "SchemaRegistryConfig": {
        "SchemaRegistryURI": url, "EventRecordFormat": "SOURCE",
        "SchemaValidationConfigs": [{"Attribute": "KEY"}, {"Attribute": "VALUE"}],
        "AccessConfigs": [{"Type": "BASIC_AUTH", "URI": SECRET}, {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ca}]}}
    assert stack.policies()["EventSourceSchemaRegistryCredentials"] == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": [SECRET, ca]}]
    assert "EventSourceGlueSchemaRegistry" not in stack.policies()
    # SOURCE bytes name a Confluent schema id: the function reads it from the same registry.
    assert stack.env()["CONNECT_INFLUX_SCHEMA_REGISTRY_URL"] == url
    own = deployable(**MSK, EsmSchemaRegistryUri=url, SchemaRegistryUrl="https://other:8081")
    assert own.env()["CONNECT_INFLUX_SCHEMA_REGISTRY_URL"] == "https://other:8081"


def test_schema_registry_off_leaves_the_function_settings_alone() -> None:
    stack = deployable(**MSK)
    assert stack.env()["CONNECT_INFLUX_SCHEMA_REGISTRY_URL"] == ""
    assert stack.env()["CONNECT_INFLUX_GLUE_REGION"] == ""


# ---------------------------------------------------------------- InfluxDB credentials


def test_influx_secret_is_readable_alone_and_decrypted_only_with_a_key() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:influx-XyZ"
    stack = deployable(**MSK, InfluxSecretArn=arn)
    assert stack.env()["CONNECT_INFLUX_SECRET_ID"] == arn
    assert stack.policies()["ReadInfluxCredentials"] == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]
    assert stack.statements_with("kms:Decrypt") == []
    key = "arn:aws:kms:us-east-1:123456789012:key/1234"
    with_key = deployable(**MSK, InfluxSecretArn=arn, KmsKeyArn=key)
    assert with_key.statements_with("kms:Decrypt") == [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key}]
    assert deployable(**MSK).env()["CONNECT_INFLUX_SECRET_ID"] == ""


# ---------------------------------------------------------------- against cfn-lint's schema


_SCHEMA_CHECK = r"""
import json, sys
from pathlib import Path
import cfnlint
import jsonschema

base = Path(cfnlint.__file__).parent / "data" / "schemas" / "providers"
schema_id = json.loads((base / "us-east-1.json").read_text())["AWS::Lambda::EventSourceMapping"]
schema = json.loads((base.parent / "resources" / f"{schema_id}.json").read_text())
validator = jsonschema.Draft7Validator({**schema, "required": []})

def typed(node, spec):
    # CloudFormation turns parameter strings into the property's type; do the same here.
    if isinstance(node, dict):
        return {k: typed(v, (spec.get("properties") or {}).get(k, {})) for k, v in node.items()}
    if isinstance(node, list):
        return [typed(v, spec.get("items", {})) for v in node]
    if node in ("true", "false"):
        return node == "true"
    if isinstance(node, str) and node.lstrip("-").isdigit():
        return int(node)
    return node

problems = []
for name, props in json.load(sys.stdin).items():
    props = {k: ("arn:aws:lambda:us-east-1:123456789012:function:f" if k == "FunctionName" else v)
             for k, v in props.items()}
    dest = props.get("DestinationConfig", {}).get("OnFailure", {})
    if dest.get("Destination", "").startswith("GetAtt:"):
        dest["Destination"] = "arn:aws:sqs:us-east-1:123456789012:q"
    for error in validator.iter_errors(typed(props, schema)):
        problems.append(f"{name}: {list(error.path)}: {error.message}")
print("\n".join(problems))
"""

SCHEMA_CASES = {
    "msk-defaults": MSK,
    "self-managed-vpc": {**SELF_MANAGED, "KafkaSubnetIds": "subnet-1,subnet-2", "KafkaSecurityGroupId": "sg-1"},
    "everything": {**MSK, "Topics": "cpu,mem,disk", "ConsumerGroupId": "g", "BisectBatchOnError": "true",
                   "MaximumRecordAgeSeconds": "600", "StartingPosition": "AT_TIMESTAMP",
                   "StartingPositionTimestamp": "1767225600", "FilterPatterns": '{"value": {"a": [1]}}',
                   "EsmMetrics": "EventCount", "MinimumPollers": "2", "MaximumPollers": "4",
                   "PollerGroupName": "pool", "EsmSchemaRegistryUri": "https://sr:8081",
                   "EsmSchemaRegistryAuth": "BASIC_AUTH", "EsmSchemaRegistrySecretArn": SECRET,
                   "OnFailureDestinationArn": "kafka://influx-dlt"},
    "on-demand": {**SELF_MANAGED, "MinimumPollers": "0", "MaxRetries": "-1",
                  "OnFailureDestinationArn": "arn:aws:s3:::bucket"},
}


@pytest.mark.skipif(not TOOLS_PYTHON.exists(),
                    reason=".tools (cfn-lint) is not installed here: scripts/ci_sam.sh creates it")
@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_resolved_mappings_match_cfn_lints_schema(case: str) -> None:
    mappings = deployable(**SCHEMA_CASES[case]).mappings()
    result = subprocess.run([str(TOOLS_PYTHON), "-c", _SCHEMA_CHECK], input=json.dumps(mappings),
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("name", "value"), [
    ("Topics", "x"), ("Topics", ".hidden"), ("Topics", "cpu,mem v2"),
    ("OnFailureDestinationArn", "kafka://dlt"), ("OnFailureDestinationArn", "arn:aws:lambda:us-east-1:1:function:f"),
    ("ConsumerGroupId", "a b"), ("EsmMetrics", "EventCount,Bogus"),
])
def test_parameter_patterns_refuse_what_the_mapping_would(name: str, value: str) -> None:
    """The schema's own limits (a topic of 2-249 characters not starting with '.', a destination of at
    least 12 characters, ...) are parameter patterns, so a bad value fails before anything is created."""
    with pytest.raises(AssertionError, match=f"{name}="):
        evaluate(**{**MSK, name: value})
