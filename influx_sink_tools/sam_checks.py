"""The Python steps of scripts/ci_sam.sh, run by the tools virtualenv's Python (.tools/bin/python).

    python -m influx_sink_tools.sam_checks translate OUT.json   # template.yaml through SAM's translator
    python -m influx_sink_tools.sam_checks samconfig            # samconfig.toml against the template

They need aws-sam-cli's packages (``samcli``, ``samtranslator``), which pin boto3 and live only in
.tools/, never in .venv; so this module imports nothing of the project and nothing of them until a
step runs. A failed check exits 1 with one message per problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from typing import Any

PLACEHOLDER_CODE_URI = "s3://placeholder-bucket/influx-sink.zip"  # what `sam package` puts in its place
ENVIRONMENTS = ("default", "prod")


class NoManagedPolicies:
    """The template names managed policies by ARN only: nothing to look up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def _template(path: str = "template.yaml") -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse

    with open(path, encoding="utf-8") as fh:
        template: dict[str, Any] = yaml_parse(fh.read())
    return template


def translate(out: str) -> None:
    """The template as CloudFormation sees it after the Serverless transform, written to ``out``.

    cfn-lint checks that result; a resource left as ``AWS::Serverless::*`` means the transform
    did not understand it.
    """
    from samtranslator.translator.transform import transform

    template = _template()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PLACEHOLDER_CODE_URI
    translated = transform(template, {}, NoManagedPolicies())
    leftover = sorted({r["Type"] for r in translated["Resources"].values() if r["Type"].startswith("AWS::Serverless")})
    if leftover:
        sys.exit(f"untranslated resources: {leftover}")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(translated, fh, indent=1)
    print(f"{len(translated['Resources'])} resources: {', '.join(sorted(translated['Resources']))}")


def samconfig_problems(params: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """What is wrong with each environment's parameter overrides: unknown, not allowed, or missing."""
    from samcli.cli.types import CfnParameterOverridesType

    problems = []
    for env in ENVIRONMENTS:
        deploy = config.get(env, {}).get("deploy", {}).get("parameters", {})
        overrides = CfnParameterOverridesType().convert(deploy.get("parameter_overrides", ""), None, None)
        if not overrides:
            problems.append(f"[{env}] has no deploy parameter_overrides")
        for key, value in overrides.items():
            if key not in params:
                problems.append(f"[{env}] {key} is not a template parameter")
            elif "AllowedValues" in params[key] and value not in [str(v) for v in params[key]["AllowedValues"]]:
                problems.append(f"[{env}] {key}={value!r} is not one of {params[key]['AllowedValues']}")
        missing = [k for k, p in params.items() if "Default" not in p and k not in overrides]
        if missing:
            problems.append(f"[{env}] no value for required parameters {missing}")
        stack = config.get(env, {}).get("global", {}).get("parameters", {}).get("stack_name")
        if not stack:
            problems.append(f"[{env}] has no global stack_name")
        print(f"[{env}] {len(overrides)} overrides; stack {stack}")
    return problems


def samconfig() -> None:
    """Every parameter override of every samconfig.toml environment is a template parameter with an allowed value."""
    with open("samconfig.toml", "rb") as fh:
        config = tomllib.load(fh)
    problems = samconfig_problems(_template()["Parameters"], config)
    if problems:
        sys.exit("\n".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m influx_sink_tools.sam_checks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("translate", help="the template through SAM's translator").add_argument("out")
    steps.add_parser("samconfig", help="samconfig.toml's parameter overrides against the template")
    args = parser.parse_args(argv)
    if args.step == "translate":
        translate(args.out)
    else:
        samconfig()
    return 0


if __name__ == "__main__":
    sys.exit(main())
