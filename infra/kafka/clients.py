"""Every Kafka client caselog makes, with the deployment's security settings.

``security(settings)`` is the one function that turns the ``CASELOG_KAFKA_*`` security settings into
client configuration (kafka-python's names: ``security_protocol``, ``sasl_mechanism``,
``sasl_plain_username``/``sasl_plain_password``, ``ssl_cafile``, ``ssl_certfile``/``ssl_keyfile``). The
relay's producer, the topic admin and offset checks, the readers (``tail``, ``replay --source kafka``,
``verify --seals kafka``), the seals publisher and the faust workers (``faust_credentials``: the same
settings as faust/aiokafka take them) all get it, and make their clients here, so none connects with
less. Without settings it is PLAINTEXT, as before.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Mapping

from infra.settings import SettingError, Settings

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
Security = Mapping[str, Any]


def _readable(variable: str, path: str | None) -> str | None:
    if path is not None and not os.access(path, os.R_OK):
        raise SettingError(variable, f"cannot read {path}")
    return path


def security(settings: Settings) -> dict[str, Any]:
    """The security configuration of every Kafka client of this deployment (kafka-python's keyword
    arguments), checked: SASL needs a mechanism, a user name and a password; TLS files must be readable."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise SettingError("CASELOG_KAFKA_SECURITY_PROTOCOL",
                           f"PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, not {protocol!r}")
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise SettingError("CASELOG_KAFKA_SASL_MECHANISM",
                               f"one of {', '.join(SASL_MECHANISMS)}, not {mechanism!r}")
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise SettingError("CASELOG_KAFKA_SASL_USERNAME" if not settings.kafka_sasl_username
                               else "CASELOG_KAFKA_SASL_PASSWORD", f"{protocol} needs a user name and a password")
        config.update(sasl_mechanism=mechanism, sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    elif settings.kafka_sasl_username or settings.kafka_sasl_mechanism:
        raise SettingError("CASELOG_KAFKA_SECURITY_PROTOCOL", f"SASL settings are given but the protocol is {protocol}:"
                           " SASL_SSL (or SASL_PLAINTEXT) uses them")
    if protocol.endswith("SSL"):
        ca = _readable("CASELOG_KAFKA_CA_FILE", settings.kafka_ca_file)
        cert = _readable("CASELOG_KAFKA_CERT_FILE", settings.kafka_cert_file)
        key = _readable("CASELOG_KAFKA_KEY_FILE", settings.kafka_key_file)
        if bool(cert) != bool(key):
            raise SettingError("CASELOG_KAFKA_CERT_FILE", "a client certificate and its key go together"
                               " (CASELOG_KAFKA_CERT_FILE and CASELOG_KAFKA_KEY_FILE)")
        config["ssl_check_hostname"] = True
        config.update({k: v for k, v in (("ssl_cafile", ca), ("ssl_certfile", cert), ("ssl_keyfile", key)) if v})
    elif settings.kafka_ca_file or settings.kafka_cert_file:
        raise SettingError("CASELOG_KAFKA_SECURITY_PROTOCOL", f"TLS files are given but the protocol is {protocol}:"
                           " SSL (or SASL_SSL) uses them")
    return config


def client_config(bootstrap: str, sec: Security | None = None, **options: Any) -> dict[str, Any]:
    """A kafka-python client's keyword arguments: the servers, the options, then the security (last, so no
    option weakens it)."""
    return {"bootstrap_servers": bootstrap, **options, **dict(sec or {})}


def producer(bootstrap: str, sec: Security | None = None, **options: Any):
    from kafka import KafkaProducer

    return KafkaProducer(**client_config(bootstrap, sec, **options))


def consumer(bootstrap: str, sec: Security | None = None, **options: Any):
    from kafka import KafkaConsumer

    return KafkaConsumer(**client_config(bootstrap, sec, **options))


def admin(bootstrap: str, sec: Security | None = None, **options: Any):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**client_config(bootstrap, sec, **options))


def ssl_context(sec: Security) -> ssl.SSLContext:
    """The TLS context of ``sec`` (the CA file, or the system's CAs; the client certificate if given)."""
    context = ssl.create_default_context(cafile=sec.get("ssl_cafile"))
    context.check_hostname = bool(sec.get("ssl_check_hostname", True))
    if sec.get("ssl_certfile"):
        context.load_cert_chain(sec["ssl_certfile"], sec.get("ssl_keyfile"))
    return context


def faust_credentials(sec: Security | None) -> Any:
    """``sec`` as faust's ``broker_credentials`` (which it hands to aiokafka): None for PLAINTEXT."""
    import faust

    sec = dict(sec or {})
    protocol = sec.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(sec) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=sec["sasl_plain_username"], password=sec["sasl_plain_password"],
                                 ssl_context=context, mechanism=sec["sasl_mechanism"])
