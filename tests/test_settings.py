"""Settings: TOML file first, POSTROOM_* environment variables override it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.errors import ConfigError
from postroom.settings import load_settings


def test_environment_overrides_the_config_file(tmp_path: Path):
    config = tmp_path / "postroom.toml"
    config.write_text('[postroom]\nmail_domain = "mail.acme.example"\nmax_message_size = 1000\n'
                      'smtp_listen = "0.0.0.0:25"\n')
    settings = load_settings(config, environ={"POSTROOM_MAX_MESSAGE_SIZE": "2048",
                                              "POSTROOM_DATA_DIR": str(tmp_path / "d")})
    assert settings.mail_domain == "mail.acme.example"
    assert settings.max_message_size == 2048
    assert settings.smtp_address == ("0.0.0.0", 25)
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'd' / 'postroom.db').resolve()}"
    assert settings.resolved_blob_url == f"file://{(tmp_path / 'd' / 'blobs').resolve()}"


@pytest.mark.parametrize(("environ", "message"), [
    ({"POSTROOM_MAX_MESSAGE_SIZE": "big"}, "max_message_size"),
    ({"POSTROOM_SMTP_LISTEN": "localhost"}, "host:port"),
])
def test_bad_values_give_one_clear_error(environ, message):
    with pytest.raises(ConfigError, match=message):
        assert load_settings(None, environ=environ).smtp_address


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path):
    config = tmp_path / "postroom.toml"
    config.write_text("[postroom]\nmail_domian = 'typo.example'\n")
    with pytest.raises(ConfigError, match="mail_domian"):
        load_settings(config, environ={})
