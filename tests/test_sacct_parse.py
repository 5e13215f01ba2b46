"""Pure parsing of sacct/squeue output (no Slurm needed)."""

from __future__ import annotations

from datetime import datetime

import pytest

from planner.jobs.sacct import (
    SACCT_FIELDS,
    SQUEUE_FIELDS,
    JobRecord,
    chunk_job_ids,
    expand_task_range,
    parse_max_array_size,
    parse_sacct,
    parse_squeue,
    sacct_argv,
    squeue_argv,
)
from planner.spec.states import FINAL_STATES, JOB_STATES, is_final, normalise_state


def sacct_line(
    job_id: str,
    state: str,
    exit_code: str = "0:0",
    *,
    raw: str | None = None,
    reason: str = "None",
    submit: str = "2025-03-01T10:00:00",
    start: str = "2025-03-01T10:00:05",
    end: str = "2025-03-01T10:01:05",
    elapsed: str = "60",
    nodes: str = "node1",
    name: str = "train",
) -> str:
    """One line as ``sacct --parsable2`` prints it for SACCT_FIELDS."""
    values = {
        "JobID": job_id,
        "JobIDRaw": raw if raw is not None else job_id,
        "State": state,
        "ExitCode": exit_code,
        "Reason": reason,
        "Submit": submit,
        "Start": start,
        "End": end,
        "ElapsedRaw": elapsed,
        "NodeList": nodes,
        "JobName": name,
    }
    assert tuple(values) == SACCT_FIELDS, "test helper out of date with SACCT_FIELDS"
    return "|".join(values.values())


def by_id(text: str) -> dict[str, JobRecord]:
    return {r.job_id: r for r in parse_sacct(text)}


# --- argv -------------------------------------------------------------------------


def test_sacct_argv_pins_format_and_skips_steps() -> None:
    argv = sacct_argv(["12", "13_4"])
    assert argv[0] == "sacct"
    assert "--jobs=12,13_4" in argv
    assert f"--format={','.join(SACCT_FIELDS)}" in argv
    assert {"--parsable2", "--noheader", "--allocations"} <= set(argv)
    assert not any(a.startswith("--starttime") for a in argv)
    assert "--starttime=2025-03-01T00:00:00" in sacct_argv(["1"], "2025-03-01T00:00:00")


def test_sacct_fields_cover_what_status_needs() -> None:
    for field in ("JobID", "State", "ExitCode", "Reason", "Start", "End", "ElapsedRaw"):
        assert field in SACCT_FIELDS
    assert SACCT_FIELDS[-1] == "JobName"  # the only free-text field goes last


def test_argv_refuses_empty_id_list() -> None:
    # sacct without --jobs would list every job of the day.
    with pytest.raises(ValueError):
        sacct_argv([])
    with pytest.raises(ValueError):
        squeue_argv([])


def test_squeue_argv() -> None:
    argv = squeue_argv(["5", "6"])
    assert argv[0] == "squeue"
    assert "--jobs=5,6" in argv
    assert {"--array", "--noheader", "--states=all"} <= set(argv)
    assert f"--format={'|'.join(code for code, _ in SQUEUE_FIELDS)}" in argv


# --- parse_sacct --------------------------------------------------------------------


def test_completed_and_failed_jobs() -> None:
    text = "\n".join(
        [
            sacct_line("100", "COMPLETED"),
            sacct_line("101", "FAILED", "3:0"),
        ]
    )
    records = by_id(text)
    ok, bad = records["100"], records["101"]
    assert ok.state == "COMPLETED" and ok.exit_code == 0 and ok.signal == 0
    assert ok.start == datetime(2025, 3, 1, 10, 0, 5)
    assert ok.end == datetime(2025, 3, 1, 10, 1, 5)
    assert ok.elapsed_s == 60 and ok.node_list == "node1" and ok.name == "train"
    assert ok.array_job_id is None and ok.array_task_id is None
    assert ok.reason is None  # "None" is no reason
    assert bad.state == "FAILED" and bad.exit_code == 3 and bad.is_final


def test_steps_are_skipped() -> None:
    text = "\n".join(
        [
            sacct_line("100", "FAILED", "3:0"),
            sacct_line("100.batch", "FAILED", "3:0", raw="100.batch", name="batch"),
            sacct_line("100.extern", "COMPLETED", raw="100.extern", name="extern"),
            sacct_line("100.0", "FAILED", "3:0", raw="100.0", name="python"),
            sacct_line("7_2.batch", "COMPLETED", raw="9.batch", name="batch"),
        ]
    )
    assert [r.job_id for r in parse_sacct(text)] == ["100"]


def test_array_tasks_come_back_individually() -> None:
    text = "\n".join(
        [
            sacct_line("200_0", "COMPLETED", raw="201"),
            sacct_line("200_1", "FAILED", "1:0", raw="202"),
            sacct_line("200_2", "RUNNING", raw="200", end="Unknown"),
        ]
    )
    records = parse_sacct(text)
    assert [r.job_id for r in records] == ["200_0", "200_1", "200_2"]
    assert all(r.array_job_id == "200" for r in records)
    assert [r.array_task_id for r in records] == [0, 1, 2]
    assert [r.raw_id for r in records] == ["201", "202", "200"]
    assert records[2].end is None and not records[2].is_final


def test_pending_array_range_is_expanded_per_task() -> None:
    text = sacct_line(
        "300_[0-3%2]",
        "PENDING",
        raw="300",
        reason="Priority",
        start="Unknown",
        end="Unknown",
        elapsed="0",
        nodes="None assigned",
    )
    records = parse_sacct(text)
    assert [r.job_id for r in records] == ["300_0", "300_1", "300_2", "300_3"]
    for task, r in enumerate(records):
        assert r.state == "PENDING" and r.reason == "Priority"
        assert r.array_job_id == "300" and r.array_task_id == task
        assert r.raw_id is None  # a pending task has no id of its own yet
        assert r.start is None and r.end is None and r.node_list is None


def test_pending_range_does_not_duplicate_started_tasks() -> None:
    # sacct keeps printing the original range on the pending remainder.
    text = "\n".join(
        [
            sacct_line("3_0", "RUNNING", raw="5", end="Unknown"),
            sacct_line("3_1", "COMPLETED", raw="6"),
            sacct_line("3_[0-2%2]", "PENDING", raw="3", start="Unknown", end="Unknown"),
        ]
    )
    records = by_id(text)
    assert sorted(records) == ["3_0", "3_1", "3_2"]
    assert records["3_0"].state == "RUNNING"
    assert records["3_1"].state == "COMPLETED"
    assert records["3_2"].state == "PENDING"


def test_range_with_steps_and_lists() -> None:
    text = sacct_line("40_[1-7:3,10]", "PENDING", start="Unknown", end="Unknown")
    assert [r.job_id for r in parse_sacct(text)] == ["40_1", "40_4", "40_7", "40_10"]


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("CANCELLED by 0", "CANCELLED"),
        ("CANCELLED by 1234567", "CANCELLED"),
        ("CANCELLED+", "CANCELLED"),
        ("OUT_OF_MEMORY", "OUT_OF_MEMORY"),
        ("NODE_FAIL", "NODE_FAIL"),
        ("PREEMPTED", "PREEMPTED"),
        ("TIMEOUT", "TIMEOUT"),
        ("BOOT_FAIL", "BOOT_FAIL"),
        ("DEADLINE", "DEADLINE"),
        ("REQUEUED", "REQUEUED"),
        ("SUSPENDED", "SUSPENDED"),
        ("COMPLETING", "RUNNING"),
        ("REQUEUE_HOLD", "PENDING"),
        ("SPECIAL_EXIT", "FAILED"),
        ("CG", "RUNNING"),
        ("PD", "PENDING"),
        ("OOM", "OUT_OF_MEMORY"),
        ("something new", "UNKNOWN"),
        ("", "UNKNOWN"),
    ],
)
def test_state_normalisation(raw: str, state: str) -> None:
    assert normalise_state(raw) == state


def test_cancelled_oom_node_fail_preempted_records() -> None:
    text = "\n".join(
        [
            sacct_line("1", "CANCELLED by 0", "0:15"),
            sacct_line("2", "OUT_OF_MEMORY", "0:125"),
            sacct_line("3", "NODE_FAIL", "1:0"),
            sacct_line("4", "PREEMPTED", "0:0"),
            sacct_line("5", "TIMEOUT", "0:0"),
            # Pending jobs cancelled before they ever started: Slurm writes Start as
            # "None" or, depending on timing, as the cancel time.
            sacct_line("6", "CANCELLED by 0", start="None", elapsed="0", nodes="None assigned"),
            sacct_line(
                "7", "CANCELLED", start="2025-03-01T10:01:05", elapsed="0", nodes="None assigned"
            ),
        ]
    )
    r = by_id(text)
    assert r["1"].state == "CANCELLED" and r["1"].raw_state == "CANCELLED by 0"
    assert r["1"].exit_code == 0 and r["1"].signal == 15
    assert r["2"].state == "OUT_OF_MEMORY" and r["2"].signal == 125
    assert r["3"].state == "NODE_FAIL" and r["3"].exit_code == 1
    assert r["4"].state == "PREEMPTED"
    assert r["5"].state == "TIMEOUT"
    assert r["6"].start is None and r["6"].node_list is None
    assert r["7"].start is None and r["7"].end == datetime(2025, 3, 1, 10, 1, 5)
    assert all(rec.is_final for rec in r.values())


def test_unknown_and_none_times() -> None:
    text = sacct_line(
        "9", "PENDING", submit="2025-03-01T10:00:00", start="Unknown", end="None", elapsed="0"
    )
    (rec,) = parse_sacct(text)
    assert rec.submit == datetime(2025, 3, 1, 10, 0)
    assert rec.start is None and rec.end is None and rec.elapsed_s == 0


def test_garbage_blank_and_header_lines_are_skipped() -> None:
    text = "\n".join(
        [
            "",
            "|".join(SACCT_FIELDS),  # a header, if --noheader was lost
            "sacct: error: slurm_persist_conn_open: connection refused",
            "   ",
            "12|12|COMPLETED",  # truncated line
            sacct_line("abc", "COMPLETED"),  # not a job id
            sacct_line("13", "COMPLETED", "garbled", start="not-a-time", elapsed="x"),
            sacct_line("14", "COMPLETED"),
            "\x00\x01|||",
        ]
    )
    records = by_id(text)
    assert sorted(records) == ["13", "14"]
    # A readable id with unreadable fields is kept, with the unreadable parts unknown.
    assert records["13"].exit_code is None and records["13"].signal is None
    assert records["13"].start is None and records["13"].elapsed_s is None


def test_job_name_containing_the_delimiter() -> None:
    (rec,) = parse_sacct(sacct_line("15", "COMPLETED", name="a|b|c"))
    assert rec.name == "a|b|c" and rec.state == "COMPLETED"


def test_later_duplicate_wins_and_order_is_kept() -> None:
    text = "\n".join(
        [
            sacct_line("1", "PENDING", start="Unknown", end="Unknown"),
            sacct_line("2", "COMPLETED"),
            sacct_line("1", "COMPLETED"),
        ]
    )
    records = parse_sacct(text)
    assert [(r.job_id, r.state) for r in records] == [("1", "COMPLETED"), ("2", "COMPLETED")]


def test_crlf_and_empty_text() -> None:
    assert parse_sacct("") == []
    (rec,) = parse_sacct(sacct_line("1", "COMPLETED") + "\r\n")
    assert rec.name == "train"


# --- parse_squeue -------------------------------------------------------------------


def squeue_line(*values: str) -> str:
    assert len(values) == len(SQUEUE_FIELDS)
    return "|".join(values)


def test_parse_squeue_running_pending_and_completed() -> None:
    text = "\n".join(
        [
            # job_id raw array task state reason submit start end elapsed nodes name
            squeue_line(
                "7_0",
                "9",
                "7",
                "0",
                "RUNNING",
                "None",
                "2025-03-01T10:00:00",
                "2025-03-01T10:00:01",
                "2025-03-01T11:00:01",
                "1:02:03",
                "node1",
                "eval",
            ),
            squeue_line(
                "7_1",
                "7",
                "7",
                "1",
                "PENDING",
                "JobArrayTaskLimit",
                "2025-03-01T10:00:00",
                "2025-03-01T10:30:00",
                "2025-03-01T11:30:00",
                "0:00",
                "",
                "eval",
            ),
            squeue_line(
                "8",
                "8",
                "8",
                "N/A",
                "COMPLETED",
                "None",
                "2025-03-01T10:00:00",
                "2025-03-01T10:00:01",
                "2025-03-01T10:00:09",
                "0:08",
                "node1",
                "train",
            ),
            squeue_line(
                "10",
                "10",
                "10",
                "N/A",
                "COMPLETING",
                "None",
                "2025-03-01T10:00:00",
                "2025-03-01T10:00:01",
                "2025-03-01T11:00:01",
                "1-00:00:05",
                "node1",
                "x",
            ),
            "garbage",
        ]
    )
    r = {rec.job_id: rec for rec in parse_squeue(text)}
    assert sorted(r) == ["10", "7_0", "7_1", "8"]
    run, pend, done, completing = r["7_0"], r["7_1"], r["8"], r["10"]
    assert run.state == "RUNNING" and run.array_job_id == "7" and run.array_task_id == 0
    assert run.raw_id == "9" and run.elapsed_s == 3723 and run.end is None
    assert run.exit_code is None and run.signal is None  # squeue has no exit codes
    assert pend.state == "PENDING" and pend.reason == "JobArrayTaskLimit"
    assert pend.start is None and pend.raw_id is None and pend.node_list is None
    assert done.state == "COMPLETED" and done.array_job_id is None
    assert done.end == datetime(2025, 3, 1, 10, 0, 9) and done.elapsed_s == 8
    assert completing.state == "RUNNING" and completing.elapsed_s == 86405


def test_parse_squeue_expands_a_range_printed_without_array_flag() -> None:
    text = squeue_line(
        "5_[2-3]",
        "5",
        "5",
        "2-3",
        "PENDING",
        "Priority",
        "2025-03-01T10:00:00",
        "N/A",
        "N/A",
        "0:00",
        "",
        "eval",
    )
    assert [r.job_id for r in parse_squeue(text)] == ["5_2", "5_3"]


# --- small helpers ------------------------------------------------------------------


def test_is_final() -> None:
    assert FINAL_STATES < set(JOB_STATES)
    for state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"):
        assert is_final(state)
    for state in ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "UNKNOWN"):
        assert not is_final(state)
    assert is_final("CANCELLED by 0")  # raw states are normalised first


def test_chunk_job_ids() -> None:
    ids = [str(i) for i in range(1000, 1100)]
    chunks = chunk_job_ids(ids, max_chars=50)
    assert [i for c in chunks for i in c] == ids
    assert all(len(",".join(c)) <= 50 for c in chunks)
    assert len(chunks) == 10  # 10 ids of 4 chars + 9 commas = 49
    assert chunk_job_ids([]) == []
    assert chunk_job_ids(["1", "2", "1"], 100) == [["1", "2"]]
    assert chunk_job_ids(["123456", "1"], 3) == [["123456"], ["1"]]
    with pytest.raises(ValueError):
        chunk_job_ids(["1"], 0)


def test_expand_task_range() -> None:
    assert expand_task_range("0-2%2") == [0, 1, 2]
    assert expand_task_range("5,1-3") == [1, 2, 3, 5]
    assert expand_task_range("0-10:5") == [0, 5, 10]
    for bad in ("", "3-1", "a", "1-5:0"):
        with pytest.raises(ValueError):
            expand_task_range(bad)


def test_parse_max_array_size() -> None:
    text = (
        "Configuration data as of 2025-03-01T10:00:00\n"
        "MailProg                = /bin/true\n"
        "MaxArraySize            = 1001\n"
        "MaxJobCount             = 10000\n"
    )
    assert parse_max_array_size(text) == 1001
    with pytest.raises(ValueError):
        parse_max_array_size("MaxJobCount = 10000\n")
