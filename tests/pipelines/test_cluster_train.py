"""The compiled pipelines carry the multi-node train step: parameters, PVC, credentials, profile."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.pipelines.compile import compile_pipeline, load_compiled
from detpipe.pipelines.profiles import STUDY_4X4, arguments
from detpipe.pipelines.settings import PipelineSettings

SETTINGS = PipelineSettings(
    target="cluster", image="registry.local/detpipe:test", gpu_node_selector={"gpu": "h100"}
)
JOB_PARAMS = {"nnodes", "launcher", "job_timeout_s"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled-cluster")
    return {
        name: load_compiled(compile_pipeline(name, SETTINGS, out / f"{name}.yaml").read_text())
        for name in ("train_to_edge", "small_data_sweep")
    }


def _train_task(spec):
    tasks = spec["root"]["dag"]["tasks"]
    if "train-op" in tasks:
        return tasks["train-op"]
    loop = next(t for name, t in tasks.items() if name.startswith("for-loop"))
    return spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["train-op"]


@pytest.mark.parametrize("pipeline", ["train_to_edge", "small_data_sweep"])
def test_train_step_takes_nnodes_and_launcher(compiled, pipeline):
    spec, platform = compiled[pipeline]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) >= JOB_PARAMS
    assert params["nnodes"]["defaultValue"] == 1  # default: train in the step's own pod, as before
    assert params["launcher"]["defaultValue"] == "pytorchjob"
    inputs = _train_task(spec)["inputs"]["parameters"]

    def source(name):  # inside the sweep's loop, pipeline inputs arrive as pipelinechannel--NAME
        return inputs[name]["componentInputParameter"].removeprefix("pipelinechannel--")

    for name in JOB_PARAMS:
        assert source(name) == name
    assert source("job_store") == ("store" if pipeline == "train_to_edge" else "job_store")
    # build-time settings reach the job's pods: image, placement, the dataset PVC
    assert inputs["job_image"]["runtimeValue"]["constant"] == "registry.local/detpipe:test"
    assert inputs["job_node_selector"]["runtimeValue"]["constant"] == {"gpu": "h100"}
    assert inputs["job_tolerations"]["runtimeValue"]["constant"] == ["nvidia.com/gpu:NoSchedule"]
    assert inputs["job_data_pvc"]["runtimeValue"]["constant"] == "detpipe-datasets"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-op"]
    (pvc,) = k8s["pvcMount"]
    assert (pvc["constant"], pvc["mountPath"]) == ("detpipe-datasets", "/data")
    assert k8s["secretAsEnv"][0]["secretName"] == "detpipe-minio"  # to fetch the job's outputs


def test_local_build_adds_no_cluster_settings(tmp_path):
    spec, platform = load_compiled(
        compile_pipeline("train_to_edge", PipelineSettings(), tmp_path / "t.yaml").read_text()
    )
    assert "nnodes" in spec["root"]["inputDefinitions"]["parameters"]
    assert platform is None or "exec-train-op" not in str(platform)


def test_study_profile():
    args = arguments("small_data_sweep", quick=False, profile="study-4x4")
    assert args == STUDY_4X4 == {"nnodes": 4, "nproc_per_node": 4, "launcher": "pytorchjob", "batch": 256}
    assert args["batch"] % (args["nnodes"] * args["nproc_per_node"]) == 0
    assert arguments("small_data_sweep", False, {"launcher": "trainjob"}, profile="study-4x4")[
        "launcher"
    ] == ("trainjob")
    with pytest.raises(InvalidInput, match="profile 'huge'"):
        arguments("small_data_sweep", False, profile="huge")
