"""Encryption at rest, unit by unit (issue 12): the keyring decrypts under the new then the old key,
documents are sealed with it, and keys that are not AES keys are refused naming the setting."""

from __future__ import annotations

import base64
import os

import pytest

from infra.settings import SettingError, Settings
from infra.store.cipher import Keyring, NotDecryptable, open_document, parse_key, seal_document


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_the_keyring_decrypts_under_the_new_then_the_old_key_and_refuses_any_other():
    old, new = parse_key("K", key()), parse_key("K", key())
    before = Keyring(old).encrypt(b"plaintext")
    rotating = Keyring(new, old)
    assert rotating.decrypt(before) == (b"plaintext", 1)
    assert rotating.decrypt(rotating.encrypt(b"plaintext")) == (b"plaintext", 0)
    with pytest.raises(NotDecryptable):
        Keyring(new).decrypt(before)
    document = seal_document(Keyring(old), b"%PDF-1.4 ...")
    assert b"%PDF" not in document and open_document(rotating, document) == (b"%PDF-1.4 ...", 1)
    assert open_document(None, b"%PDF-1.4 legacy") == (b"%PDF-1.4 legacy", None)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode(),
                                   base64.b64encode(bytes(33)).decode()])
def test_a_key_that_is_not_base64_of_an_aes_key_is_refused_naming_the_setting(value):
    with pytest.raises(SettingError, match="CASELOG_CIPHER_KEY"):
        Keyring.of(Settings(cipher_key=value))
    with pytest.raises(SettingError, match="CASELOG_CIPHER_OLD_KEY"):
        Keyring.of(Settings(cipher_key=key(), cipher_old_key=value))


def test_an_old_key_alone_is_refused():
    with pytest.raises(SettingError, match="CASELOG_CIPHER_KEY"):
        Keyring.of(Settings(cipher_old_key=key()))
    assert "cipher_key" not in repr(Settings(cipher_key=key()))
