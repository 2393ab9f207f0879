"""The same real relay, service and CLI as the export tests."""

from tests.exports.conftest import customer, fast, relay, run, running, start_relay  # noqa: F401 (fixtures)
