"""scripts/slurm_grid.sh on a real single-node Slurm cluster: Debian's slurm-wlm and munge, started by
the module in a temporary folder (skipped, saying why, where they are not installed or cannot start).
A tiny grid's two cells run as one array job against a tracking server, one task cancelled after its
first epoch continues its run when submitted again, and the report is built from the server in
another project folder that ran nothing: the several-machines recipe of docs/mlflow.md#several-machines."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT, free_port, kedro_run, make_project, running_mlflow_server
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.grid.mlflow_runs import comparison_runs

SCRIPT = PROJECT_ROOT / "scripts/slurm_grid.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 3, batch_size: 8, lr_milestones: [3], num_workers: 0, eval_batch_size: 16}
  compare: {methods: [mle], seeds: [0, 1], noise_levels: [{name: clean}]}
"""
SLURM_CONF = """\
ClusterName=mlehandtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else f"(no {path.name})"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment (``SLURM_CONF``) of a one-node Slurm cluster started for this module."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"Slurm is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        pytest.skip("the test's Slurm node runs its daemons as root (slurmd starts jobs as their user)")
    folder = tmp_path_factory.mktemp("slurm")
    (folder / "state").mkdir(), (folder / "spool").mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(folder=folder, ctld_port=free_port(), d_port=free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = subprocess.run(
        ["munged", "--force", f"--socket={folder}/munge.socket", f"--key-file={key}",
         f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
         f"--seed-file={folder}/munged.seed"],
        capture_output=True, text=True,
    )  # fmt: skip
    if munge.returncode != 0:
        pytest.skip(f"munged does not start here: {munge.stderr.strip() or _tail(folder / 'munged.log')}")
    daemons = [
        subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        for argv in (
            ["slurmctld", "-D", "-f", str(conf)],
            ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                pytest.skip(
                    "the Slurm daemons do not start here: "
                    f"{_tail(folder / 'slurmctld.log')}\n{_tail(folder / 'slurmd.log')}"
                )
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for daemon in daemons:
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
        if (pid := folder / "munged.pid").exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as uri:
        yield uri


def _submit(project: Path, env: dict[str, str], tasks: int, *options: str) -> str:
    """``sbatch`` the script from the project folder, one task per commands line; the job id."""
    done = subprocess.run(
        ["sbatch", "--parsable", f"--array=1-{tasks}", "--cpus-per-task=1", "--output=slurm-%A_%a.out",
         *options, str(SCRIPT)],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + "".join(_tail(p) for p in project.glob("slurm-*.out"))
    return done.stdout.strip().split(";")[0]


def _commands(project: Path, *params: str) -> list[str]:
    kedro_run(project, "--pipelines=compare_commands_rhd", *params)
    return (project / "data/08_reporting/rhd/compare/commands.txt").read_text().splitlines()


def _cells(client: MlflowClient) -> dict[str, list[tuple[str, str]]]:
    """``{cell: [(run id, status), ...]}`` of the comparison's cell runs on the server, newest first."""
    runs = comparison_runs(client, "compare_rhd", status=None)
    cells: dict[str, list[tuple[str, str]]] = {}
    for row in runs.itertuples():
        cells.setdefault(row.cell, []).append((row.run_id, row.status))
    return cells


def _last_checkpoint(client: MlflowClient, project: Path, cell: str) -> Path | None:
    """The ``last.pt`` of ``cell``'s run once its first epoch is saved (None before)."""
    runs = _cells(client).get(cell)
    if not runs:
        return None
    last = project / "data/06_models/rhd/mle" / runs[0][0] / "last.pt"
    return last if last.is_file() else None


@pytest.mark.slow
def test_a_grid_as_a_slurm_array_job_resumes_a_cancelled_cell_and_reports_from_the_server(
    slurm, server, preprocessed_rhd_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "180")  # the test server shares 2 busy cores
    env = {
        **os.environ,
        **slurm,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    client = MlflowClient(server)
    project = make_project(tmp_path)
    (project / "conf/local/parameters_tiny.yml").write_text(TINY)
    shutil.copytree(preprocessed_rhd_data, project / "data")

    # The documented recipe: print the cells, submit one array task per line. Task 2 is cancelled
    # once its first epoch is saved (a preempted or timed-out task); task 1 runs to the end.
    assert len(_commands(project)) == 2
    job = _submit(project, env, 2)
    deadline = time.monotonic() + 600
    while not (last := _last_checkpoint(client, project, "mle-clean-scratch-s1")):
        assert time.monotonic() < deadline, "task 2 saved no epoch in 10 minutes"
        time.sleep(0.5)
    subprocess.run(["scancel", f"{job}_2"], env=env, check=True)
    while subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.5)
    cells = _cells(client)
    assert [status for _, status in cells["mle-clean-scratch-s0"]] == ["FINISHED"]
    ((killed, status),) = cells["mle-clean-scratch-s1"]
    assert status == "KILLED" and last.parent.name == killed
    out = {p.name: p.read_text() for p in project.glob("slurm-*_*.out")}
    assert len(out) == 2 and all(
        "on " in text and "kedro run --pipelines=train_rhd" in text for text in out.values()
    )

    # Submitted again, only the cancelled cell runs, and it continues its run from its checkpoint
    (line,) = _commands(project)  # the finished cell is left out
    assert "rhd.tracking.tags.cell=mle-clean-scratch-s1," in line and f"rhd.train.resume={killed}" in line
    _submit(project, env, 1, "--wait")
    (resumed, status), (first, _) = _cells(client)["mle-clean-scratch-s1"]  # newest first
    assert first == killed and status == "FINISHED"
    assert client.get_run(resumed).data.tags["resumed_from"] == killed

    # The report, from the server alone: in another project folder that ran nothing
    (tmp_path / "elsewhere").mkdir()
    elsewhere = make_project(tmp_path / "elsewhere")
    (elsewhere / "conf/local/parameters_tiny.yml").write_text(TINY)
    kedro_run(elsewhere, "--pipelines=compare_report_rhd")
    verdict = (elsewhere / "data/08_reporting/rhd/compare/verdict.md").read_text()
    assert "2 of 2 planned cells" in verdict
    assert not (project / "mlflow.db").exists() and not (elsewhere / "mlflow.db").exists()
