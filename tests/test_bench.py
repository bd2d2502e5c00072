"""The benchmark harness runs and produces well-formed results.

Each suite runs once, in its ``--smoke`` form, into a temporary results directory; the
tests then check what it wrote: the JSON's schema, every summary's shape, Markdown
tables with consistent columns, real PNG files. No timing is asserted: performance is
only ever claimed from bench/, as ratios within one run. Parts that need an OCI runtime
(and root) skip with a reason when the host lacks it; a runtime that is absent must be
reported as absent, never as a number.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import charts
from bench.report import cell
from bench.stats import absent, interleave, percentile, ratio, summarise

ROOT = Path(__file__).resolve().parents[1]
OK_KEYS = {"status", "unit", "n", "median", "p90", "p99", "min", "max", "mean"}
NOT_OK = {"absent", "failed", "n/a", "skipped"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_runs: dict[str, dict[str, Any]] = {}


def smoke(suite: str, out_root: Path) -> dict[str, Any]:
    """Run ``python -m bench <suite> --smoke`` once per test session."""
    if suite not in _runs:
        out = out_root / suite
        done = subprocess.run(
            [sys.executable, "-m", "bench", suite, "--smoke", "--out", str(out),
             "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=280)
        assert done.returncode == 0, done.stderr[-4000:]
        _runs[suite] = {"doc": json.loads(done.stdout), "out": out, "stderr": done.stderr}
    return _runs[suite]


@pytest.fixture(scope="module")
def out_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def oci_ready(name: str) -> bool:
    return os.geteuid() == 0 and shutil.which(name) is not None


def check_files(run: dict[str, Any], suite: str) -> None:
    doc, out = run["doc"], run["out"]
    jsons = sorted(out.glob(f"{suite}-*.json"))
    mds = sorted(out.glob(f"{suite}-*.md"))
    assert len(jsons) == 1 and len(mds) == 1, sorted(p.name for p in out.iterdir())
    written = json.loads(jsons[0].read_text())
    assert written["results"] == doc["results"]
    # The file name is <suite>-<host>-<UTC stamp>.
    stem = jsons[0].stem
    assert stem.startswith(f"{suite}-{doc['host']['host']}-")
    assert len(stem.rsplit("-", 1)[1]) == len("20260101T000000Z")
    assert doc["charts"], "every suite draws at least one chart"
    for name in doc["charts"]:
        png = out / name
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 5_000, f"{name} is suspiciously small ({len(data)} bytes)"
    md = mds[0].read_text()
    assert md.startswith(f"# bench `{suite}`")
    assert "## Context" in md and "## Method" in md and "## Results" in md
    check_tables(md)
    for name in doc["charts"]:
        assert f"]({name})" in md


def check_tables(md: str) -> None:
    """Every Markdown table: a header, a separator, rows of the same width."""
    lines = md.splitlines()
    tables = 0
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            width = lines[i].count(" | ") + 1
            assert lines[i + 1].count("|") - 1 == width, lines[i]
            i += 2
            rows = 0
            while i < len(lines) and lines[i].startswith("| "):
                assert lines[i].count(" | ") + 1 == width, lines[i]
                rows += 1
                i += 1
            assert rows > 0
            tables += 1
        i += 1
    assert tables > 0


def check_doc(doc: dict[str, Any], suite: str, mode: str = "smoke") -> None:
    assert doc["schema"] == "ironclaw-bench/2"
    assert (doc["suite"], doc["mode"]) == (suite, mode)
    host = doc["host"]
    for key in ("kernel", "cpu_model", "cpus", "mem_total_mib", "cgroup", "runtimes",
                "virtualisation", "python"):
        assert key in host, key
    assert host["cgroup"] in ("v1", "v2", "hybrid", "v1 (empty unified mount)", "none")
    assert set(host["runtimes"]) == {"runsc", "runc", "crun"}
    for info in host["runtimes"].values():
        assert info["status"] in ("present", "absent")
        if info["status"] == "present":
            assert info["version"]
    assert doc["method"]
    assert doc["results"]
    for measure, per in doc["results"].items():
        assert per, measure
        for variant, entry in per.items():
            check_entry(f"{measure}/{variant}", entry)
    for name, value in doc["ratios"].items():
        assert value is None or (isinstance(value, float) and value > 0), name


def check_entry(where: str, entry: dict[str, Any]) -> None:
    status = entry.get("status")
    if status == "ok":
        assert {"status", "unit", "n", "median"} <= set(entry), where
        assert entry["n"] >= 1, where
        if "min" in entry:
            assert set(entry) >= OK_KEYS, where
            assert entry["min"] <= entry["median"] <= entry["max"], where
            assert entry["p90"] <= entry["p99"] <= entry["max"], where
    else:
        assert status in NOT_OK, where
        assert entry.get("reason"), f"{where}: a {status} entry must say why"
        assert "median" not in entry, f"{where}: not run, so no figure (never a zero)"


# -- the suites ------------------------------------------------------------------------

@pytest.mark.long  # 45 s: make bench runs the suite itself
def test_sandbox_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("sandbox", out_root)
    doc = run["doc"]
    check_doc(doc, "sandbox")
    check_files(run, "sandbox")
    results = doc["results"]
    for measure in ("cold_start", "warm_start", "agent_ready", "cpu", "syscall", "io",
                    "memory_pss_1", "memory_rss_1"):
        assert set(results[measure]) == {"runsc", "runc", "crun", "bare"}, measure
        assert results[measure]["bare"]["status"] == "ok", (measure, results[measure]["bare"])
    for name in ("runsc", "runc", "crun"):
        if not shutil.which(name):
            assert results["warm_start"][name]["status"] == "absent"
            assert cell(results["warm_start"][name]) == "absent"
    md = next(run["out"].glob("sandbox-*.md")).read_text()
    assert "THEIRS" in md, "the seed figures are shown, marked as theirs"


@pytest.mark.long  # about 80 s for the three runtimes: make bench runs the suite itself
@pytest.mark.parametrize("runtime", ["runsc", "runc", "crun"])
def test_sandbox_suite_measures_each_present_runtime(out_root: Path, runtime: str) -> None:
    if not oci_ready(runtime):
        pytest.skip(f"{runtime} is not installed, or this is not root")
    results = smoke("sandbox", out_root)["doc"]["results"]
    for measure in ("cold_start", "warm_start", "cpu", "syscall", "io", "agent_ready",
                    "memory_pss_1"):
        assert results[measure][runtime]["status"] == "ok", (measure,
                                                            results[measure][runtime])


def test_sandbox_suite_attributes_gvisor_memory_by_role(out_root: Path) -> None:
    if not oci_ready("runsc"):
        pytest.skip("runsc is not installed, or this is not root")
    doc = smoke("sandbox", out_root)["doc"]
    roles = doc["extra"]["memory_roles_pss_mib"]["1"]["runsc"]
    assert {"gVisor Sentry (runsc-sandbox)", "gVisor gofer"} <= set(roles)
    assert all(value > 0 for value in roles.values())


@pytest.mark.long  # 40 s: make bench runs the suite itself
def test_queue_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("queue", out_root)
    doc = run["doc"]
    check_doc(doc, "queue")
    check_files(run, "queue")
    reply = doc["results"]["reply_warm"]
    for variant in ("floor", "floor (queue only)", "process", "anchor replay (2 s poll)"):
        assert reply[variant]["status"] == "ok", (variant, reply[variant])
    for name in ("runsc", "runc", "crun"):
        assert name in reply, "every runtime has an entry, if only to say it is absent"
    for name, steps in doc["extra"]["throughput"].items():
        for step in steps:
            if step["status"] == "ok":
                assert step["lost"] == 0 and step["duplicated"] == 0, (name, step)
    assert [s["sessions"] for s in doc["extra"]["throughput"]["process"]] == [1, 2]


@pytest.mark.long  # about 70 s for the three runtimes: make bench runs the suite itself
@pytest.mark.parametrize("runtime", ["runsc", "runc", "crun"])
def test_queue_suite_measures_each_present_runtime(out_root: Path, runtime: str) -> None:
    if not oci_ready(runtime):
        pytest.skip(f"{runtime} is not installed, or this is not root")
    doc = smoke("queue", out_root)["doc"]
    for measure in ("reply_warm", "cold_first_reply", "throughput_1"):
        entry = doc["results"][measure][runtime]
        assert entry["status"] == "ok", (measure, entry)
    steps = doc["extra"]["throughput"][runtime]
    assert [s["sessions"] for s in steps] == [1, 2]
    assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in steps)


def test_queue_floor_alias_still_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "queue-floor", "--smoke",
                           "--no-write", "--no-progress"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    check_doc(doc, "queue-floor")
    assert set(doc["results"]["floor"]) == {"roundtrip_in_process", "roundtrip_cross_process",
                                            "open_raw_key", "open_passphrase"}


@pytest.mark.long  # 17 s: make bench runs the suite itself
def test_scale_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("scale", out_root)
    doc = run["doc"]
    check_doc(doc, "scale")
    check_files(run, "scale")
    for name, ramp in doc["extra"]["ramps"].items():
        if not oci_ready(name):
            assert ramp["status"] == "absent"
            continue
        assert ramp["status"] == "ok", ramp
        assert ramp["curve"], "at least one step"
        assert ramp["stop_reason"]
        counts = [pt["count"] for pt in ramp["curve"]]
        assert counts == sorted(counts) and counts[-1] <= 2  # the smoke cap
        assert ramp["idle_cpu"][0]["live"] == 1
        assert ramp["idle_cpu"][0]["core_percent_per_sandbox"] >= 0


def test_the_scale_count_cap_is_an_option() -> None:
    from bench.scale import MODES, steps_up_to, with_max

    assert steps_up_to(200) == (1, 2, 4, 8, 16, 32, 64, 96, 128, 160, 192, 200)
    assert steps_up_to(3) == (1, 2, 3)
    raised = with_max(MODES["quick"], 100)
    assert raised.steps[-1] == 100 and raised.time_cap_s >= 400
    assert with_max(MODES["quick"], None) == MODES["quick"]
    done = subprocess.run([sys.executable, "-m", "bench", "queue", "--max", "5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "scale suite only" in done.stderr


@pytest.mark.long  # 11 s: make bench runs the suite itself
def test_api_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("api", out_root)
    doc = run["doc"]
    check_doc(doc, "api")
    check_files(run, "api")
    saturation = doc["extra"]["saturation"]
    if shutil.which("wrk") is None:
        assert "absent" in saturation
    else:
        for runs in saturation["steps"].values():
            assert all(r["requests"] == r["ok"] + r["status_429"] + r["status_other"]
                       for r in runs)
        assert all(r["status_429"] == 0 for r in saturation["half"].values())
    for fan in doc["extra"]["fanout"]:
        assert fan["delivered"] + fan["dropped"] == fan["events"] * fan["subscribers"]


def test_models_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("models", out_root)
    doc = run["doc"]
    check_doc(doc, "models")
    check_files(run, "models")
    redaction = doc["extra"]["redaction"]
    assert redaction["false_positives"] == 0 and redaction["misses"] == 0
    assert redaction["previous_false_positives"] > 0  # the corpus does trip the old one
    replies = doc["results"]["reply_latency"]
    if replies["local"]["status"] == "ok":
        assert 0 <= doc["extra"]["plane_share"] < 1


@pytest.mark.long  # 40 s: make redteam-full runs the family
def test_redteam_suite_writes_well_formed_results(out_root: Path) -> None:
    run = smoke("redteam", out_root)
    doc = run["doc"]
    check_doc(doc, "redteam")
    replies = doc["results"]["bystander_reply"]
    for name in ("runsc", "runc"):
        report = doc["extra"]["reports"][name]
        if not oci_ready(name):
            assert report["status"] == "absent"
            continue
        assert report["baseline"]["bystander_replies"] > 0
        assert [o["probe"] for o in report["observations"]] == ["host.heartbeat.fifo"]
        assert replies[f"{name}: host.heartbeat.fifo"]["status"] == "ok"
    if any(oci_ready(name) for name in ("runsc", "runc")):
        check_files(run, "redteam")


# -- the pieces ------------------------------------------------------------------------

def test_summaries_and_ratios() -> None:
    s = summarise([0.003, 0.001, 0.002])
    assert (s["n"], s["median"], s["min"], s["max"]) == (3, 2.0, 1.0, 3.0)
    assert s["unit"] == "ms"
    assert percentile(list(range(100)), 0.99) == 98
    assert summarise([])["status"] == "failed"
    assert ratio(summarise([0.004]), summarise([0.002])) == pytest.approx(2.0)
    assert ratio(summarise([0.004]), absent("not installed")) is None
    assert cell(absent("not installed")) == "absent"


def test_interleave_rotates_the_order_and_isolates_a_failing_case() -> None:
    seen: list[str] = []

    def case(name: str) -> Any:
        def run() -> float:
            seen.append(name)
            if name == "broken" and len(seen) > 3:
                raise RuntimeError("boom")
            return 1.0
        return run

    out = interleave({n: case(n) for n in ("a", "b", "broken")}, iterations=3, warmup=1)
    assert seen[:3] == ["a", "b", "broken"] and seen[3:6] == ["b", "broken", "a"]
    assert len(out["a"]) == 3 and len(out["b"]) == 3
    assert out.failures["broken"] == "RuntimeError: boom"


def test_a_chart_shows_an_absent_runtime_as_text_not_a_bar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list[Any] = []
    monkeypatch.setattr(charts.plt, "close", figures.append)
    data = {"warm": {"runsc": absent("not installed"), "runc": summarise([0.01, 0.02])}}
    path = charts.grouped_bars(tmp_path / "c.png", title="t", subtitle="s", groups=["warm"],
                               variants=["runsc", "runc"], data=data, ylabel="ms")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    (ax,) = figures[0].axes
    assert "absent" in [t.get_text() for t in ax.texts]
    heights = sorted(bar.get_height() for bar in ax.patches)
    assert heights == [0, 15.0]  # runsc: an empty slot with its label; runc: the median
    monkeypatch.undo()
    charts.plt.close(figures[0])


def test_render_redraws_a_saved_run_from_its_json(out_root: Path, tmp_path: Path) -> None:
    run = smoke("api", out_root)
    saved = next(run["out"].glob("api-*.json"))
    copy = tmp_path / saved.name
    copy.write_text(saved.read_text())
    done = subprocess.run([sys.executable, "-m", "bench", "render", str(copy)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    redrawn = json.loads(copy.read_text())
    assert redrawn["results"] == run["doc"]["results"]
    for name in redrawn["charts"]:
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / f"{copy.stem}.md").read_text().startswith("# bench `api`")


@pytest.mark.long  # 60 s: python -m bench mcp runs the suite itself
def test_mcp_suite_compares_sandboxed_servers_with_a_direct_child(out_root: Path) -> None:
    if not oci_ready("runsc"):
        pytest.skip("runsc is not installed, or this is not root")
    run = smoke("mcp", out_root)
    doc = run["doc"]
    check_doc(doc, "mcp")
    check_files(run, "mcp")
    for measure in ("call_latency", "cold_start"):
        for variant in ("direct", "runsc"):
            assert doc["results"][measure][variant]["status"] == "ok", (measure, variant)
    assert doc["ratios"]["runsc_call_p50_over_direct"] > 0
    memory = doc["extra"]["memory"]
    assert memory["runsc"]["one"] > 0 and memory["direct"]["one"] > 0
