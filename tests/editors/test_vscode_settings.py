"""The VS Code extension's settings mirror the server's options: same names, same defaults."""

import json

from lsp_server.config import DEFAULTS, to_wire

from .conftest import EDITORS

CLIENT_ONLY = {"enable", "serverPath", "serverArgs"}
# Settings that VS Code cannot leave unset: "" stands for the server's None.
EMPTY_MEANS_NONE = {"model", "logFile", "servedModel", "apiKeyEnv", "caBundle"}


def contributed_settings() -> dict:
    manifest = json.loads((EDITORS / "vscode" / "package.json").read_text())
    props = manifest["contributes"]["configuration"]["properties"]
    return {key.removeprefix("infill."): spec for key, spec in props.items()}


def test_every_server_option_is_a_vscode_setting_and_nothing_else_is():
    settings = set(contributed_settings()) - CLIENT_ONLY
    assert settings == set(to_wire(DEFAULTS))


def test_vscode_setting_defaults_equal_the_server_defaults():
    settings = contributed_settings()
    for name, server_default in to_wire(DEFAULTS).items():
        default = settings[name]["default"]
        if name in EMPTY_MEANS_NONE:
            assert server_default is None and default == "", name
        else:
            assert default == server_default, name


def test_vscode_enum_settings_offer_exactly_the_server_choices():
    from inference.api import BACKENDS, FIM_FORMAT_NAMES
    from lsp_server.config import DEVICES, DTYPES, LOG_LEVELS

    settings = contributed_settings()
    assert settings["device"]["enum"] == list(DEVICES)
    assert settings["dtype"]["enum"] == list(DTYPES)
    assert settings["logLevel"]["enum"] == list(LOG_LEVELS)
    assert settings["backend"]["enum"] == list(BACKENDS)
    assert settings["fimFormat"]["enum"] == ["auto", *FIM_FORMAT_NAMES]
