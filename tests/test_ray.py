"""Ray done properly (issue 27): the transfer executor and ``taskonomy repro --ray`` on a simulated
two-node cluster (``ray.cluster_utils.Cluster``: a head with one CPU, a node with one CPU and a fake GPU).
Ray is an optional extra; ``make test`` installs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
cloudpickle = pytest.importorskip("ray.cloudpickle")

from conftest import BIN                                       # noqa: E402
from fake_bank import fake_split                               # noqa: E402
from taskonomy.config import TrainTaskParams, TransferParams   # noqa: E402
from taskonomy.errors import TaskonomyError                    # noqa: E402
from taskonomy.nets.models import build_encoder                # noqa: E402
from taskonomy.transfer import engine as T                     # noqa: E402
from taskonomy.transfer.executors import ExecutorSpec, init_ray, map_jobs, to_numpy, to_torch  # noqa: E402
from test_runner import _lock, _project, _runner               # noqa: E402

# the jobs below are this module's functions: Ray's workers get them by value, the project by runtime_env
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NET = TrainTaskParams(width=4, head_width=8, bottleneck_channels=4, bottleneck_stride=4)
PARAMS = TransferParams(epochs=1, batch_size=8, lr=3e-3)
TARGETS = ["rgb2depth", "class_scene", "fix_pose"]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    gpu_node = c.add_node(num_cpus=1, num_gpus=1)
    c.wait_for_nodes()
    init_ray(c.address)
    yield c, gpu_node.node_id
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def transfer():
    torch.set_num_threads(1)
    splits = {s: fake_split(s, n_scenes=4, resolution=16) for s in ("train", "transfer", "test")}
    targets = T.load_targets(splits, TARGETS)
    reps = {}
    for seed, source in enumerate(("edge2d", "random"), 1):
        torch.manual_seed(seed)
        reps[source] = T.encode_source(build_encoder(NET).eval(), targets)
    context = T.TransferContext(reps, T.strip_views(targets), PARAMS, NET)
    return context, [((s,), t) for s in reps for t in TARGETS]


def _where(context, job):
    """A transfer job that says where it ran and what it was given."""
    return (ray.get_runtime_context().get_node_id(), sorted(context.reps), sorted(context.targets), context.device,
            T.train_readout(context, job).losses)


def test_jobs_land_on_both_nodes_with_only_their_data_and_equal_the_local_results(cluster, transfer):
    (c, _), (context, jobs) = cluster, transfer
    local = T.run_transfers(context, jobs, ExecutorSpec(threads=1))
    out = map_jobs(_where, context, jobs, ExecutorSpec(kind="ray", ray_address=c.address, cpus_per_job=1.0))
    assert len({node for node, *_ in out}) == 2
    for (sources, target), (_, reps, targets, device, losses) in zip(jobs, out):
        assert reps == list(sources) and targets == [target] and device == "cpu"
        np.testing.assert_array_equal(losses, local[target][sources[0]])


def test_tensors_travel_as_numpy_and_come_back_equal(transfer):
    context, _ = transfer
    part = to_numpy(context.part("targets:fix_pose"))
    assert isinstance(part["test"].index.array, np.ndarray)
    back = to_torch(part)
    assert torch.equal(back["test"].index, context.targets["fix_pose"]["test"].index)
    assert back["test"].task == context.targets["fix_pose"]["test"].task


def _dies_once(folder, job):
    """The worker process dies on a job's first try (as an out-of-memory kill would), not on its retry."""
    marker = Path(folder) / f"tried-{job}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return job * 2


def test_a_job_whose_worker_dies_is_retried(cluster, tmp_path):
    c, _ = cluster
    assert map_jobs(_dies_once, str(tmp_path), [1, 2, 3], ExecutorSpec(kind="ray", ray_address=c.address)) == [2, 4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tried-1", "tried-2", "tried-3"]


def _fails(folder, job):
    (Path(folder) / f"ran-{job}").touch()
    if job == 2:
        raise TaskonomyError("rgb2depth: non-finite training loss")
    return job


def test_a_job_that_fails_names_itself_and_is_not_retried(cluster, tmp_path):
    c, _ = cluster
    with pytest.raises(TaskonomyError, match=r"job 2 on the Ray cluster: rgb2depth: non-finite training loss"):
        map_jobs(_fails, str(tmp_path), [2], ExecutorSpec(kind="ray", ray_address=c.address))


def test_asking_for_what_the_cluster_lacks_is_one_line(cluster):
    c, _ = cluster
    with pytest.raises(TaskonomyError, match=r"asks for 1 CPU and 2 GPU, and no node of the Ray cluster has them"):
        map_jobs(_fails, "", [1], ExecutorSpec(kind="ray", ray_address=c.address, gpus_per_job=2))
    with pytest.raises(TaskonomyError, match=r"transfer.ray.gpus_per_job: 0 with transfer.device: cuda"):
        map_jobs(_fails, "", [1], ExecutorSpec(kind="ray", ray_address=c.address, device="cuda"))


def test_a_gpu_job_on_a_node_without_cuda_says_so(cluster):
    c, _ = cluster
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fake GPU would be a real one")
    with pytest.raises(TaskonomyError, match=r"Ray gave a job 1 GPU on .*where torch sees no CUDA device"):
        map_jobs(_fails, "", [1], ExecutorSpec(kind="ray", ray_address=c.address, gpus_per_job=1))


# --------------------------------------------------------------------------------------------------
# taskonomy repro --ray: stages placed on the cluster's nodes, recorded here
# --------------------------------------------------------------------------------------------------

def _nodes(path: Path) -> dict[str, str]:
    return {log.stem: log.read_text().splitlines()[0].split()[-1] for log in (path / "logs/stages").glob("*.log")}


def test_repro_places_stages_on_the_cluster_and_records_them_as_dvc_repro_does(cluster, tmp_path):
    (c, gpu_node) = cluster
    serial, placed, on_gpu = tmp_path / "serial", tmp_path / "placed", tmp_path / "on_gpu"
    env_s = _project(serial)
    subprocess.run([str(BIN / "dvc"), "repro", "-q"], cwd=serial, env=env_s, check=True, capture_output=True)
    env = _project(placed)
    proc = _runner(placed, env, "--jobs", "2", "--ray", c.address)
    assert proc.returncode == 0, proc.stderr
    assert _lock(placed) == _lock(serial)
    assert len(set(_nodes(placed).values())) == 2 and len(_nodes(placed)) == 5
    # a stage asking for a GPU runs where there is one
    env = _project(on_gpu)
    proc = _runner(on_gpu, env, "--jobs", "2", "--ray", c.address, "--gpus-per-stage", "1", "a")
    assert proc.returncode == 0, proc.stderr
    assert set(_nodes(on_gpu).values()) == {gpu_node} and set(_lock(on_gpu)) == {"a@t1", "a@t2", "a@t3", "a@t4"}


def test_repro_asking_for_a_gpu_the_cluster_lacks_is_one_line(cluster, tmp_path):
    c, _ = cluster
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "--ray", c.address, "--gpus-per-stage", "2")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --cpus-per-stage / --gpus-per-stage: a job asks for 1 CPU and 2 GPU, and no node of the Ray cluster "
        "has them (largest: 1 CPU, 1 GPU, 2 nodes)"]
    assert not (path / "dvc.lock").exists()


def test_repro_with_a_ray_address_that_does_not_answer_is_one_line(tmp_path):
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "--ray", "127.0.0.1:9")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(
        "error: --ray: no Ray cluster answers at 127.0.0.1:9")
    assert not (path / "dvc.lock").exists()
