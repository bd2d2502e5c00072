"""``python -m bench chaos --smoke`` writes results like every other suite: the JSON
(with each runtime's fault and outcome counts), the Markdown tables and the chart. No
outcome or timing is asserted here (tests/chaos/test_chaos.py asserts the guarantees);
this checks the report is complete and consistent with what the run counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench import check_doc, check_files, smoke


@pytest.mark.slow
@pytest.mark.long  # 30 s: make chaos runs the suite; the short form is test_chaos.py
@pytest.mark.timeout(300)
def test_the_chaos_suite_writes_a_well_formed_report(tmp_path: Path) -> None:
    run = smoke("chaos", tmp_path)
    doc = run["doc"]
    check_doc(doc, "chaos")
    check_files(run, "chaos")
    outcome = doc["extra"]["outcomes"]["process"]
    assert "error" not in outcome, outcome
    assert outcome["plane_kills_total"] >= 2 and outcome["agent_kills"] == 2
    assert outcome["events"] > 0
    # The table shows what was counted.
    md = next(run["out"].glob("chaos-*.md")).read_text()
    assert f"| process | {outcome['plane_kills_total']} |" in md
    recovery = doc["results"]["recovery"]["process"]
    assert recovery["status"] == "ok" and recovery["n"] == len(outcome["recovery_s"])
