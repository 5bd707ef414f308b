"""`make install` hands pip's configuration to uv (tools/uv_install.py)."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "uv_install", Path(__file__).resolve().parents[1] / "tools" / "uv_install.py")
uv_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_install)

PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/somewhere/else'
global.index-url='https://mirror.example/simple'
install.index-url='https://install-section.example/simple'
"""


def test_pip_configuration_becomes_uv_options_ranked_as_pip_ranks_them():
    config = uv_install.parse_pip_config(PIP_CONFIG_LIST)
    assert config["find-links"] == "/opt/wheels"  # the environment beats the config file
    assert config["index-url"] == "https://install-section.example/simple"  # install > global
    args = uv_install.uv_arguments(config)
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]  # pip's best match over indexes
    pairs = list(zip(args[2::2], args[3::2]))
    assert ("--extra-index-url", "file:///opt/pypi/simple") in pairs
    assert ("--extra-index-url", "file:///opt/pypi-more/simple") in pairs
    assert ("--find-links", "/opt/wheels") in pairs and ("--find-links", "/somewhere/else") not in pairs
    assert ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    assert ("--index-url", "https://install-section.example/simple") in pairs


def test_no_configuration_gives_only_the_resolution_strategy():
    assert uv_install.uv_arguments(uv_install.parse_pip_config("")) == [
        "--index-strategy", "unsafe-best-match"]
    assert "--no-index" in uv_install.uv_arguments({"no-index": "true"})


def test_empty_values_are_ignored_and_timeout_names_are_one_option():
    config = uv_install.parse_pip_config(
        ":env:.index-url=''\n:env:.default-timeout='180'\nglobal.index-url='https://m.example/simple'\n"
        "global.timeout='15'\n")
    assert config["index-url"] == "https://m.example/simple"  # an empty PIP_INDEX_URL is ignored
    assert config["timeout"] == "180"  # PIP_DEFAULT_TIMEOUT beats global.timeout
    assert "--no-index" in uv_install.uv_arguments({"no-index": "y"})
    assert "--no-index" not in uv_install.uv_arguments({"no-index": "off"})
