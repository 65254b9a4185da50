"""The runner's security flags: what they resolve to, what they refuse, and the tokens they make.

The flags are parsed by the runner's own parser and turned into both backends' settings; MSK IAM
tokens come from AWS's real signer library with static credentials (it signs locally, no network).
tests/e2e/test_secure.py runs TLS, mutual TLS and SCRAM against a broker.
"""

from __future__ import annotations

import argparse
import base64
import urllib.parse

import pytest

from influx_sink_tools import consume, kafka_clients
from influx_sink_tools.kafka_clients import MskIamTokens, SecurityConfigError, SecurityProtocol


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    consume.add_arguments(parser)
    return parser.parse_args(["--bootstrap-servers", "b:9092", "--topics", "t", "--group-id", "g", *flags])


def security(*flags: str) -> kafka_clients.Security:
    return consume.security_from_args(parse(*flags))


@pytest.fixture
def pem(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_plaintext_by_default_and_the_protocol_follows_from_the_flags(pem, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    assert security().protocol is SecurityProtocol.PLAINTEXT
    assert security("--ssl-cafile", pem).protocol is SecurityProtocol.SSL
    assert security("--sasl-mechanism", "PLAIN", "--sasl-username", "u").protocol is SecurityProtocol.SASL_SSL
    assert security("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256",
                    "--sasl-username", "u").protocol is SecurityProtocol.SASL_PLAINTEXT


def test_both_backends_get_the_same_tls_and_scram_settings(pem, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD", "keypw")
    sec = security("--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "alice", "--ssl-cafile", pem,
                   "--ssl-certfile", pem, "--ssl-keyfile", pem, "--no-ssl-check-hostname")
    assert sec.kafka_python() == {
        "security_protocol": "SASL_SSL", "ssl_cafile": pem, "ssl_certfile": pem, "ssl_keyfile": pem,
        "ssl_password": "keypw", "ssl_check_hostname": False, "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice", "sasl_plain_password": "s3cret"}
    assert sec.librdkafka() == {
        "security.protocol": "SASL_SSL", "ssl.ca.location": pem, "ssl.certificate.location": pem,
        "ssl.key.location": pem, "ssl.key.password": "keypw", "ssl.endpoint.identification.algorithm": "none",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "s3cret"}


def test_passwords_never_show_in_the_options_or_the_runner_log_line(pem, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD", "s3cret-key")
    opts = consume.options_from_args(parse("--sasl-mechanism", "PLAIN", "--sasl-username", "u",
                                           "--ssl-certfile", pem))
    assert "s3cret" not in repr(opts)
    assert "s3cret" not in str(opts.security)


@pytest.mark.parametrize(("flags", "message"), [
    (("--ssl-cafile", "/nope/ca.pem"), "--ssl-cafile /nope/ca.pem: no such file"),
    (("--security-protocol", "PLAINTEXT", "--ssl-cafile", "PEM"), "need TLS, but --security-protocol is PLAINTEXT"),
    (("--security-protocol", "SASL_SSL",), "--security-protocol SASL_SSL needs --sasl-mechanism"),
    (("--sasl-mechanism", "SCRAM-SHA-256",), "needs --sasl-username"),
    (("--sasl-mechanism", "PLAIN", "--sasl-username", "u"), "needs the password in $KAFKA_SASL_PASSWORD"),
    (("--sasl-mechanism", "OAUTHBEARER",), "needs --sasl-oauth-token-file"),
    (("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "AWS_MSK_IAM", "--aws-region", "eu-west-1"),
     "AWS_MSK_IAM needs --security-protocol SASL_SSL"),
    (("--sasl-mechanism", "AWS_MSK_IAM",), "AWS_MSK_IAM needs --aws-region"),
    (("--aws-profile", "p",), "--aws-profile/--aws-role-arn are for --sasl-mechanism AWS_MSK_IAM"),
    (("--ssl-keyfile", "PEM",), "--ssl-keyfile needs --ssl-certfile"),
])
def test_unusable_flags_are_named_before_anything_connects(flags, message, pem, monkeypatch):
    for name in ("KAFKA_SASL_PASSWORD", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SecurityConfigError) as raised:
        security(*(pem if f == "PEM" else f for f in flags))
    assert message in str(raised.value)


def test_a_bad_flag_exits_2_with_the_message(capsys, monkeypatch):
    monkeypatch.delenv("KAFKA_SASL_PASSWORD", raising=False)
    assert consume.run(parse("--sasl-mechanism", "PLAIN", "--sasl-username", "u")) == 2
    assert "needs the password in $KAFKA_SASL_PASSWORD" in capsys.readouterr().err


@pytest.fixture
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def _signed_url(token: str) -> urllib.parse.ParseResult:
    return urllib.parse.urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())


def test_msk_iam_tokens_are_signed_by_aws_signer_for_the_region_and_reused(aws_credentials, monkeypatch):
    sec = security("--sasl-mechanism", "AWS_MSK_IAM", "--aws-region", "eu-west-1")
    assert sec.protocol is SecurityProtocol.SASL_SSL
    assert sec.kafka_python()["sasl_mechanism"] == sec.librdkafka()["sasl.mechanisms"] == "OAUTHBEARER"
    token, expiry = sec.librdkafka()["oauth_cb"]("")
    url = _signed_url(token)
    query = urllib.parse.parse_qs(url.query)
    assert url.netloc == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]
    assert expiry > kafka_clients.time.time()

    tokens = MskIamTokens("eu-west-1")
    signed: list[tuple[str, float]] = []
    sign = tokens._generate
    monkeypatch.setattr(tokens, "_generate", lambda: signed.append(sign()) or signed[-1])
    first = tokens.token()
    assert tokens.token() == first and len(signed) == 1  # reused while valid
    monkeypatch.setattr(kafka_clients.time, "time", lambda: first[1] - kafka_clients.TOKEN_REFRESH_MARGIN + 1)
    tokens.token()
    assert len(signed) == 2  # signed again shortly before it expires


def test_kafka_python_gets_the_token_through_its_provider_interface(aws_credentials, tmp_path):
    from kafka.net.sasl.oauth import AbstractTokenProvider

    provider = security("--sasl-mechanism", "AWS_MSK_IAM", "--aws-region", "us-east-1") \
        .kafka_python()["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert _signed_url(provider.token()).netloc == "kafka.us-east-1.amazonaws.com"

    path = tmp_path / "token"
    path.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    file_sec = security("--sasl-mechanism", "OAUTHBEARER", "--sasl-oauth-token-file", str(path))
    assert file_sec.kafka_python()["sasl_oauth_token_provider"].token() == "eyJhbGciOiJub25lIn0.e30."
    path.write_text("rotated")  # read again at each authentication
    assert file_sec.librdkafka()["oauth_cb"]("")[0] == "rotated"


def _documented_commands() -> list[str]:
    """Every ``influx-sink consume`` command in docs/local-runner.md's bash blocks (continuations joined)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "local-runner.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.lstrip().startswith("influx-sink consume"):
                commands.append(command.strip())
    return commands


DOCUMENTED = _documented_commands()


def test_the_page_shows_every_mechanism():
    shown = " ".join(DOCUMENTED)
    for flag in ("--ssl-cafile", "--ssl-certfile", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER", "AWS_MSK_IAM"):
        assert flag in shown


@pytest.mark.parametrize("command", DOCUMENTED, ids=range(len(DOCUMENTED)))
def test_documented_commands_are_accepted_as_written(command, tmp_path, monkeypatch, aws_credentials):
    """The page's examples parse and resolve to a usable configuration (files stand in for theirs)."""
    import shlex

    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("BOOTSTRAP", "127.0.0.1:9092")
    words = [w.replace('"$BOOTSTRAP"', "127.0.0.1:9092").replace("$BOOTSTRAP", "127.0.0.1:9092")
             for w in shlex.split(command)[2:]]
    flags_with_files = {"--ssl-cafile", "--ssl-certfile", "--ssl-keyfile", "--sasl-oauth-token-file"}
    for i, word in enumerate(words[:-1]):
        if word in flags_with_files:
            path = tmp_path / f"file{i}"
            path.write_text("x")
            words[i + 1] = str(path)
    parser = argparse.ArgumentParser()
    consume.add_arguments(parser)
    opts = consume.options_from_args(parser.parse_args(words))
    assert opts.topics == ["readings"]
    opts.security.kafka_python()
    opts.security.librdkafka()
