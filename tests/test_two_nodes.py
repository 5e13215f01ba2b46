"""``nodes: 2`` for real: one training process on each of two Slurm nodes of this machine.

The module starts its own two-node cluster with ``scripts/slurm-cluster.sh``
(``PLAN_EXPERIMENT_SLURM_NODES=2``: each slurmd in its own network namespace, address
and host name, joined by a bridge; its own state, config, ports and cluster name, so a
one-node cluster already running on the machine is left alone) and purges it at the end.
The run meets through torchrun's c10d rendezvous at the first node's address, trains
with gloo across the bridge, saves one adapter, and its evaluation reads it.

Needs root and ``ip netns`` (network namespaces); skipped without them, required under
``CI=true``. About a minute on a two-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import DISTRIBUTED_TIMINGS
from slurm_support import _under_ci
from submit_support import REPO, cli, copy_example, journal, ok, plan, plan_units, status_json, unit_states, wait_final

from planner.estimate.logparse import parse_log

pytestmark = [pytest.mark.slurm, pytest.mark.train]

SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
CLUSTER = "pe2n"
NODES = [f"{CLUSTER}-node1", f"{CLUSTER}-node2"]
STATE = Path("/tmp/plan-experiment-slurm-2nodes")  # traversable by the slurm user, unlike pytest's tmp
#: The instance's own names, ports and subnet: nothing shared with a default cluster.
INSTANCE = {
    "PLAN_EXPERIMENT_SLURM_DIR": str(STATE),
    "PLAN_EXPERIMENT_SLURM_CONF_DIR": f"{STATE}-conf",
    "PLAN_EXPERIMENT_SLURM_CLUSTER": CLUSTER,
    "PLAN_EXPERIMENT_SLURM_DB_PORT": "3327",
    "PLAN_EXPERIMENT_SLURM_PORT_BASE": "6837",
    "PLAN_EXPERIMENT_SLURM_NODES": "2",
    "PLAN_EXPERIMENT_SLURM_SUBNET": "10.250.0",
}


def _unavailable(why: str) -> None:
    if _under_ci():
        pytest.fail(f"two-node cluster: {why} (CI=true: required)", pytrace=False)
    pytest.skip(f"two-node cluster: {why}")


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], env={**os.environ, **INSTANCE},
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def slurm_conf() -> Iterator[str]:
    """Start the two-node instance; yield its SLURM_CONF; purge it afterwards."""
    if os.geteuid() != 0:
        _unavailable("needs root (it starts daemons and network namespaces)")
    if shutil.which("slurmctld") is None or shutil.which("ip") is None or shutil.which("nsenter") is None:
        _unavailable("needs Slurm (scripts/slurm-cluster.sh install), iproute2 and util-linux")
    started = time.monotonic()
    proc = _cluster("start")
    DISTRIBUTED_TIMINGS.append(("two-node cluster start", time.monotonic() - started))
    try:
        if proc.returncode != 0:
            _unavailable(f"start failed: {proc.stderr.strip().splitlines()[-1:]}")
        yield f"{INSTANCE['PLAN_EXPERIMENT_SLURM_CONF_DIR']}/slurm.conf"
    finally:
        stopped = time.monotonic()
        _cluster("purge")
        DISTRIBUTED_TIMINGS.append(("two-node cluster purge", time.monotonic() - stopped))


def test_two_nodes_train_one_process_each_and_the_adapter_evaluates(
    slurm_conf: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every Slurm command below (ours, submitit's, the jobs') talks to the two-node instance.
    monkeypatch.setenv("SLURM_CONF", slurm_conf)
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True,
                           check=True, timeout=30).stdout.split("\n")
    assert sorted(line.split()[0] for line in nodes if line) == NODES, nodes

    spec_path = copy_example(tmp_path / "src", {
        "name": "cap_two_nodes", "factors": {"lora_rank": [4]}, "base_model_controls": False,
        "resources": {"gpus": 1, "nodes": 2, "time": "auto"},
    })
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["controls"]["max_steps_per_epoch"] = 8  # gloo over the bridge on a shared CPU: keep it short
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    exp = plan(spec_path, tmp_path / "out")
    runs, evals = plan_units(exp)
    started = time.monotonic()
    ok(cli("submit", exp))
    report = wait_final(exp)
    DISTRIBUTED_TIMINGS.append(("nodes: 2 run (train + eval)", time.monotonic() - started))
    assert unit_states(report) == {runs[0]: "COMPLETED", evals[0]: "COMPLETED"}
    # One status row per run, though its job ran a task on each node.
    assert [u["unit"] for u in status_json(exp)["units"]] == runs + evals

    train = journal(exp)["submissions"][0]
    assert train["parameters"]["nodes"] == 2 and train["parameters"]["gpus"] == 0
    job_id = train["tasks"][0]["job_id"]
    nodelist = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "NodeList"],
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert nodelist == f"{CLUSTER}-node[1-2]", nodelist

    run_dir = exp / runs[0]
    log = (run_dir / f"slurm-{job_id}.out").read_text(encoding="utf-8", errors="replace")
    for rank, node in enumerate(NODES):
        assert f"plan-experiment: training {runs[0]} (job {job_id}) on {node}\n" in log, log[-3000:]
        assert f"plan-experiment: rank {rank} of 2 (local rank 0) on {node}\n" in log, log[-3000:]
    rec = parse_log(log)
    assert (rec.world_size, rec.steps_per_epoch, rec.state) == (2, 8, "completed")

    adapter = run_dir / "epoch_0" / "adapter_model.pt"
    results = json.loads((run_dir / "eval" / "capitalization_epoch0" / "results.json").read_text(encoding="utf-8"))
    assert results["checkpoint"] == str(adapter) and results["n"] == 50
    assert results["adapter_sha256"] == hashlib.sha256(adapter.read_bytes()).hexdigest()
