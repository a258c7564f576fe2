"""The fault-injection suite's ledger: what the tests marked ``faults`` tried, and how it ended.

A test joins the suite with ``@pytest.mark.faults("bad_input")`` (it feeds the tool one bad
input) or ``@pytest.mark.faults("fault")`` (it injects one fault while the tool works: a killed
server, a crashed worker, Ctrl-C, a concurrent writer). Such a test asserts the ending the tool
promises for it (a one-line error, or the work going on with nothing lost), so a pass counts as
"handled as specified" and a failure as not; a test stopped by pytest-timeout counts as a hang.
Tests that check a tuning database after a fault report what they counted through the
``fault_ledger`` fixture (``ledger.count_records(committed, found)``: records committed before
or while the fault struck, and how many of them a reopened database holds).

At the end of the session the counts are printed and written as JSON: to ``$TVMC_FAULT_REPORT``
when set, else ``.pytest_cache/fault_injection.json``. ``pytest -m faults`` runs the suite alone.
The counts live in the pytest process: under pytest-xdist each worker would keep its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

KINDS = ("bad_input", "fault")


@dataclass
class FaultLedger:
    bad_inputs: int = 0
    faults_injected: int = 0
    handled: int = 0
    other_endings: int = 0
    records_checked: int = 0
    records_lost: int = 0
    hangs: int = 0
    #: test id → how it ended ("handled", "failed", "hang", "skipped")
    scenarios: dict[str, str] = field(default_factory=dict)

    def count_records(self, committed: int, found: int) -> None:
        """``committed`` records were in a database's files; reopened after the fault it holds ``found``."""
        self.records_checked += committed
        self.records_lost += max(0, committed - found)

    def record(self, nodeid: str, kind: str, report) -> None:
        if report.skipped:
            self.scenarios[nodeid] = "skipped"
            return
        if kind == "bad_input":
            self.bad_inputs += 1
        else:
            self.faults_injected += 1
        hang = report.failed and "Timeout >" in str(report.longrepr)  # pytest-timeout's "Failed: Timeout >600.0s"
        if hang:
            self.hangs += 1
            self.scenarios[nodeid] = "hang"
        elif report.passed:
            self.handled += 1
            self.scenarios[nodeid] = "handled"
        else:
            self.other_endings += 1
            self.scenarios[nodeid] = "failed"

    @property
    def tried(self) -> int:
        return self.bad_inputs + self.faults_injected

    def summary(self) -> str:
        return (
            f"fault injection: {self.bad_inputs} bad inputs tried, {self.faults_injected} faults injected, "
            f"{self.handled} of {self.tried} handled as specified (a one-line error, or the work went on), "
            f"{self.records_lost} of {self.records_checked} committed records lost, {self.hangs} hangs"
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = asdict(self) | {"tried": self.tried}
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def report_path(rootpath: Path) -> Path:
    return Path(os.environ.get("TVMC_FAULT_REPORT") or rootpath / ".pytest_cache" / "fault_injection.json")
