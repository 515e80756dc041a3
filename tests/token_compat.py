"""The README's token compatibility table comes from test results (issue 14), never by hand.

A pytest plugin (loaded by tests/conftest.py): each test below that runs records its outcome under
a PKCS#11 module and a capability into ``build/token-compat-results.json`` (or
``$CARDRENEW_COMPAT_DIR/token-compat-results.json``), merged with what earlier runs recorded;
``scripts/token_compat_table.py`` renders the table between the ``token-compat`` markers of README.md.

Which test proves what is said once, here (:data:`PROVES`: a test id prefix → the module and the
capability it proves), so the tests' own files carry nothing for it; a test may also say it with
``@pytest.mark.token_compat("SoftHSM2", "cardrenew status")``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

SOFTHSM = "SoftHSM2 2.6 (softhsm2)"
YKCS11 = "libykcs11 2.2.0 (ykcs11) over our emulator"
OPENSC = "OpenSC opensc-pkcs11.so (judge only)"

CAPABILITIES = ("token and certificates by label", "PIN: wrong, final try, locked", "sign, verified",
                "generate + write certificate", "side-by-side renewal", "resume / kill sweep", "errors change nothing",
                "cardrenew status / TUI", "cardrenew renew (CLI, TUI, SCEP)")
"""The table's columns, in order."""

PROVES: dict[str, tuple[tuple[str, str], ...]] = {
    "tests/pkcs11/test_token.py::test_it_is_a_token_named": ((SOFTHSM, CAPABILITIES[0]),),
    "tests/pkcs11/test_token.py::test_the_certificates_pair": ((SOFTHSM, CAPABILITIES[0]),),
    "tests/pkcs11/test_token.py::test_signatures_verify": ((SOFTHSM, CAPABILITIES[2]),),
    "tests/pkcs11/test_token.py::test_a_generated_key": ((SOFTHSM, CAPABILITIES[3]),),
    "tests/pkcs11/test_token.py::test_a_written_certificate": ((SOFTHSM, CAPABILITIES[3]),),
    "tests/pkcs11/test_token_errors.py::test_a_wrong_pin": ((SOFTHSM, CAPABILITIES[1]),),
    "tests/pkcs11/test_token_errors.py::test_final_try_and_locked": ((SOFTHSM, CAPABILITIES[1]),),
    "tests/pkcs11/test_token_errors.py::test_a_read_only": ((SOFTHSM, CAPABILITIES[6]),),
    "tests/pkcs11/test_token_errors.py::test_a_write_protected": ((SOFTHSM, CAPABILITIES[6]),),
    "tests/pkcs11/test_token_errors.py::test_a_token_on_read_only_storage": ((SOFTHSM, CAPABILITIES[6]),),
    "tests/pkcs11/test_token_errors.py::test_a_mechanism": ((SOFTHSM, CAPABILITIES[6]),),
    "tests/pkcs11/test_beside.py::": ((SOFTHSM, CAPABILITIES[4]),),
    "tests/pkcs11/test_beside_resume.py::": ((SOFTHSM, CAPABILITIES[5]),),
    "tests/pkcs11/test_beside_kill_sweep.py::": ((SOFTHSM, CAPABILITIES[5]),),
    "tests/pkcs11/test_token_ui.py::test_status": ((SOFTHSM, CAPABILITIES[7]),),
    "tests/pkcs11/test_token_ui.py::test_the_keys_to_renew": ((SOFTHSM, CAPABILITIES[7]),),
    "tests/pkcs11/test_token_ui.py::test_a_token_label": ((SOFTHSM, CAPABILITIES[7]),),
    "tests/pkcs11/test_token_ui.py::test_the_tui_logs_on": ((SOFTHSM, CAPABILITIES[7]),),
    "tests/pkcs11/test_token_ui.py::test_cli_renew": ((SOFTHSM, CAPABILITIES[8]),),
    "tests/pkcs11/test_token_ui.py::test_tui_update_my_card": ((SOFTHSM, CAPABILITIES[8]),),
    "tests/integration/test_scep_pkcs11.py::": ((SOFTHSM, CAPABILITIES[8]),),
    "tests/ykcs11/test_ykcs11_card.py::test_ykcs11_shows": ((YKCS11, CAPABILITIES[0]),),
    "tests/ykcs11/test_ykcs11_card.py::test_a_ykcs11_signature": ((YKCS11, CAPABILITIES[2]), (OPENSC, CAPABILITIES[0])),
    "tests/ykcs11/test_ykcs11_card.py::test_ykcs11_generates": ((YKCS11, CAPABILITIES[3]), (OPENSC, CAPABILITIES[2])),
    "tests/ykcs11/test_ykcs11_card.py::test_a_wrong_pin": ((YKCS11, CAPABILITIES[1]),),
    "tests/ykcs11/test_ykcs11_card.py::test_a_wrong_management_key": ((YKCS11, CAPABILITIES[6]),),
    "tests/ykcs11/test_ykcs11_status.py::": ((YKCS11, CAPABILITIES[7]), (OPENSC, CAPABILITIES[0])),
    "tests/ykcs11/test_ykcs11_renewal.py::test_cardrenew_renews": ((YKCS11, CAPABILITIES[8]), (OPENSC, CAPABILITIES[0]),
                                                                   (OPENSC, CAPABILITIES[2])),
    "tests/ykcs11/test_ykcs11_renewal.py::test_card_pulled": ((YKCS11, CAPABILITIES[5]),),
    "tests/ykcs11/test_ykcs11_pin.py::": ((YKCS11, CAPABILITIES[1]), (YKCS11, CAPABILITIES[6])),
}

RESULTS = Path(os.environ.get("CARDRENEW_COMPAT_DIR", Path(__file__).resolve().parents[1] / "build")) / "token-compat-results.json"


def proved_by(nodeid: str, marks: list[pytest.Mark]) -> list[tuple[str, str]]:
    """(module, capability) pairs the test ``nodeid`` proves (:data:`PROVES`, then its marks)."""
    out = [pair for prefix, pairs in PROVES.items() if nodeid.startswith(prefix) for pair in pairs]
    out += [(str(m.args[0]), str(m.args[1])) for m in marks if m.name == "token_compat" and len(m.args) == 2]
    return list(dict.fromkeys(out))


class TokenCompatRecorder:
    """Collects the outcomes of the tests named in :data:`PROVES` and writes them at the session's end."""

    def __init__(self) -> None:
        self.marks: dict[str, list[pytest.Mark]] = {}
        self.rows: dict[str, dict[str, object]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.marks = {item.nodeid: list(item.iter_markers()) for item in items}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and report.outcome == "passed":
            return  # setup/teardown that passed: the call's report says the outcome
        pairs = proved_by(report.nodeid, self.marks.get(report.nodeid, []))
        if not pairs:
            return
        outcome = "skipped" if report.skipped else ("passed" if report.passed else "failed")
        if report.nodeid in self.rows and self.rows[report.nodeid]["outcome"] == "failed":
            return  # a failed call stays failed whatever its teardown says
        self.rows[report.nodeid] = {"pairs": [list(p) for p in pairs], "outcome": outcome,
                                    "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def pytest_sessionfinish(self) -> None:
        if not self.rows:
            return
        try:
            old = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {}
        except (OSError, ValueError):
            old = {}
        old.update(self.rows)
        try:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        except OSError:
            pass  # a read-only checkout: the table is not refreshed, the tests still count


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "token_compat(module, capability): a row and column of the README's token "
                                       "compatibility table this test proves (tests/token_compat.py)")
    config.pluginmanager.register(TokenCompatRecorder(), "token-compat-recorder")
