"""The Kafka security settings reach every client caselog makes (issue 12): one function builds their
configuration, the faust workers get the same as broker credentials, and no module makes a client
without it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from infra.kafka.clients import client_config, faust_credentials, security
from infra.settings import SettingError, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_without_settings_every_client_is_plaintext():
    assert security(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert client_config("k:9092", security(Settings()), client_id="x") == {
        "bootstrap_servers": "k:9092", "client_id": "x", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_settings_become_the_client_config_and_no_option_weakens_them(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    env = {"CASELOG_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "CASELOG_KAFKA_SASL_MECHANISM": "scram-sha-512",
           "CASELOG_KAFKA_SASL_USERNAME": "relay", "CASELOG_KAFKA_SASL_PASSWORD": "s3cret",
           "CASELOG_KAFKA_CA_FILE": str(ca)}
    settings = Settings.from_env(env)
    assert "s3cret" not in repr(settings)
    sec = security(settings)
    assert sec == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "relay",
                   "sasl_plain_password": "s3cret", "ssl_check_hostname": True, "ssl_cafile": str(ca)}
    config = client_config("k:9093", sec, acks="all", security_protocol="PLAINTEXT")
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_plain_password"] == "s3cret"


def test_mutual_tls_takes_a_certificate_and_its_key(tmp_path):
    files = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem")}
    for f in files.values():
        f.write_text("x")
    sec = security(Settings(kafka_security_protocol="SSL", kafka_ca_file=str(files["ca.pem"]),
                            kafka_cert_file=str(files["cert.pem"]), kafka_key_file=str(files["key.pem"])))
    assert sec["security_protocol"] == "SSL" and sec["ssl_certfile"] == str(files["cert.pem"])
    with pytest.raises(SettingError, match="CASELOG_KAFKA_CERT_FILE"):
        security(Settings(kafka_security_protocol="SSL", kafka_cert_file=str(files["cert.pem"])))


@pytest.mark.parametrize("settings, variable", [
    (Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u"), "CASELOG_KAFKA_SASL_PASSWORD"),
    (Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="GSSAPI", kafka_sasl_username="u",
              kafka_sasl_password="p"), "CASELOG_KAFKA_SASL_MECHANISM"),
    (Settings(kafka_security_protocol="SSL", kafka_ca_file="/nonexistent/ca.pem"), "CASELOG_KAFKA_CA_FILE"),
    (Settings(kafka_sasl_username="u", kafka_sasl_password="p"), "CASELOG_KAFKA_SECURITY_PROTOCOL"),
    (Settings(kafka_ca_file="/etc/hostname"), "CASELOG_KAFKA_SECURITY_PROTOCOL"),
])
def test_incomplete_or_contradictory_security_is_refused_naming_the_setting(settings, variable):
    with pytest.raises(SettingError) as refused:
        security(settings)
    assert refused.value.variable == variable


def test_an_unknown_protocol_is_refused_when_read():
    with pytest.raises(SettingError, match="CASELOG_KAFKA_SECURITY_PROTOCOL"):
        Settings.from_env({"CASELOG_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_the_workers_get_the_same_security_as_faust_credentials():
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert faust_credentials(security(Settings())) is None
    sasl = security(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
                             kafka_sasl_username="worker", kafka_sasl_password="pw"))
    auth = credentials_to_aiokafka_auth(faust_credentials(sasl))
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"],
            auth["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-256", "worker", "pw")
    assert auth["ssl_context"] is not None
    plain = credentials_to_aiokafka_auth(faust_credentials(security(Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="w", kafka_sasl_password="p"))))
    assert (plain["security_protocol"], plain["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    tls = credentials_to_aiokafka_auth(faust_credentials(security(Settings(kafka_security_protocol="SSL"))))
    assert tls["security_protocol"] == "SSL" and tls["ssl_context"] is not None


KAFKA_CALLS = {"producer", "consumer", "make_consumer", "admin", "broker_reachable", "ensure_topic", "high_water_marks", "partitions_of",
               "partition_stream", "read_topic", "disclosures", "faust_app"}


def _passes_security(call: ast.Call) -> bool:
    """A call given the security (``security=...``, or an argument named sec/security or built by
    ``security(...)``/``kafka_security(...)``), given the whole settings alone (it builds it), or given
    nothing (a method or closure over an object that holds it: ``self.producer()``)."""
    def named(node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            return named(node.func)
        return (node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")) in (
            "sec", "security", "kafka_security")

    if not call.args and not call.keywords:
        return True
    if any(k.arg == "security" for k in call.keywords) or any(named(a) for a in call.args):
        return True
    return len(call.args) == 1 and not call.keywords and ast.unparse(call.args[0]) in ("settings", "self.settings")


def test_every_kafka_client_is_made_with_the_security_settings():
    """No module makes a Kafka client but infra/kafka/clients.py, which adds the security; every call that
    leads to a client (the client makers, topic admin and reads, the faust app) is given it."""
    makers = re.compile(r"\b(KafkaProducer|KafkaConsumer|KafkaAdminClient|AIOKafka\w+|faust\.App)\(")
    outside, missing = [], []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", "bench/", ".venv/", "examples/")):  # examples/: subscribers' own code
            continue
        text = path.read_text()
        if rel not in ("infra/kafka/clients.py", "consumers/worker.py"):
            outside += [f"{rel}: {m.group(1)}" for m in makers.finditer(text)]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in KAFKA_CALLS and not _passes_security(node):
                    missing.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert outside == [], f"Kafka clients made outside infra/kafka/clients.py: {outside}"
    assert missing == [], "Kafka calls without the security settings:\n" + "\n".join(missing)
    worker = (ROOT / "consumers/worker.py").read_text()
    assert "broker_credentials=faust_credentials(security)" in worker
