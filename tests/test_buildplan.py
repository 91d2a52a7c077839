"""Build plans per TensorRT version, against stand-ins of each version's flags (no TensorRT here).

A stand-in is a module-like object with ``__version__``, ``NetworkDefinitionCreationFlag`` and
``BuilderFlag`` holding the members that version's Python API documents; the planner only reads
those attributes, so it plans for a real ``tensorrt`` module the same way.
"""

import json
from types import SimpleNamespace

import pytest

from anonymixer.cli import main
from anonymixer.errors import EngineError
from anonymixer.export.layout import MANIFEST_VERSION, write_manifest
from anonymixer.runtime.build import network_flags
from anonymixer.runtime.buildplan import STANDIN_FLAGS, features, plan_build, plan_graph, standin
from anonymixer.runtime.manifest import ExportManifest

VERSIONS = list(STANDIN_FLAGS)        # 10.3.0 (JetPack 6.2), 10.12.0, 11.1.0
INPUTS = {"encoder": [{"name": "face", "shape": ["batch", 3, 256, 256]}],
          "mapping": [{"name": "z", "shape": ["batch", 512]}],
          "mixer": [{"name": "w_real", "shape": ["batch", 18, 512]}, {"name": "key_matrix", "shape": [512, 512]},
                    {"name": "key_offset", "shape": [18, 512]}],
          "generator": [{"name": "w_prot", "shape": ["batch", 18, 512]}]}


@pytest.fixture
def export_folder(tmp_path):
    """A manifest listing all four graphs at all three precisions (the plan reads no graph file)."""
    graphs = {stage: {p: {"file": f"{stage}{'' if p == 'fp32' else '.' + p}.onnx", "inputs": inputs,
                          "opset": 19 if p == "int8" else 17}
                      for p in ("fp32", "fp16", "int8")} for stage, inputs in INPUTS.items()}
    write_manifest(tmp_path, {
        "format": "anonymixer-onnx", "version": MANIFEST_VERSION, "graphs": graphs, "opset": 17,
        "model": {"name": "ffhq256", "description": "test", "is_random": True},
        "input_size": 256, "style_dim": 512, "n_latent": 18, "output_resolution": 256})
    return tmp_path


def weakly_typed_tensorrt():
    """A TensorRT without NetworkDefinitionCreationFlag.STRONGLY_TYPED (8.6-like): the fallback path."""
    return SimpleNamespace(__version__="8.6.1", NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0),
                           BuilderFlag=SimpleNamespace(FP16=0, INT8=1, TF32=2, REFIT=3))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_version_builds_strongly_typed_without_precision_flags(export_folder, version, precision):
    plans = plan_build(features(standin(version)), ExportManifest(export_folder), precision, (1, 4, 8))
    assert [p.stage for p in plans] == ["encoder", "mapping", "mixer", "generator"]
    for plan in plans:
        assert plan.strongly_typed and plan.builder_flags == () and plan.network_flags == ("STRONGLY_TYPED",)
    frame = {p.stage: p for p in plans if p.stage in ("encoder", "generator")}
    assert all(p.graph_precision == precision for p in frame.values())
    assert frame["encoder"].graph_file == ("encoder.onnx" if precision == "fp32" else f"encoder.{precision}.onnx")


@pytest.mark.parametrize("trt", [standin(v) for v in VERSIONS] + [weakly_typed_tensorrt()],
                         ids=VERSIONS + ["8.6-like"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_mapping_and_mixer_are_planned_fp32_with_tf32_off_for_every_precision(export_folder, trt, precision):
    plans = {p.stage: p for p in plan_build(features(trt), ExportManifest(export_folder), precision, (1, 4, 8))}
    for stage in ("mapping", "mixer"):
        plan = plans[stage]
        assert plan.graph_precision == "fp32" and plan.graph_file == f"{stage}.onnx"
        assert plan.builder_flags == () and plan.cleared_flags == ("TF32",)
        assert plan.precision == precision     # the engine still sits under the --precision file name


@pytest.mark.parametrize("version", VERSIONS)
def test_key_inputs_get_their_one_fixed_shape_and_frames_the_batch_range(export_folder, version):
    plans = {p.stage: p for p in plan_build(features(standin(version)), ExportManifest(export_folder), "fp16",
                                            (1, 4, 8))}
    assert plans["mixer"].profile["key_matrix"] == ((512, 512),) * 3
    assert plans["mixer"].profile["key_offset"] == ((18, 512),) * 3
    assert plans["mixer"].profile["w_real"] == ((1, 18, 512), (4, 18, 512), (8, 18, 512))


def test_without_the_strongly_typed_flag_the_frame_graphs_fall_back_to_precision_flags(export_folder):
    trt = features(weakly_typed_tensorrt())
    plans = {p.stage: p for p in plan_build(trt, ExportManifest(export_folder), "int8", (1, 1, 4))}
    assert not plans["encoder"].strongly_typed and plans["encoder"].builder_flags == ("INT8", "FP16")
    assert plans["generator"].network_flags == ()


def test_network_flag_bits_follow_each_versions_enum_values():
    plan = plan_graph(features(standin("10.3.0")), "encoder", "fp16", "e.onnx", INPUTS["encoder"], (1, 1, 1))
    assert network_flags(standin("10.3.0").NetworkDefinitionCreationFlag, plan) == 1 << 1   # EXPLICIT_BATCH is 0
    assert network_flags(standin("11.1.0").NetworkDefinitionCreationFlag, plan) == 1 << 0
    assert network_flags(weakly_typed_tensorrt().NetworkDefinitionCreationFlag, plan) == 0


def test_features_read_pybind_enums_through_their_members():
    class Enum:
        __members__ = {"STRONGLY_TYPED": 1}

    class Flags:
        __members__ = {"TF32": 0, "REFIT": 1}

    found = features(SimpleNamespace(__version__="11.3.0", NetworkDefinitionCreationFlag=Enum, BuilderFlag=Flags))
    assert found.strongly_typed and found.max_opset == 25 and found.builder_flags == ("TF32", "REFIT")


def test_a_graph_above_the_parsers_opset_is_refused_on_10x_and_taken_on_11x():
    inputs = INPUTS["encoder"]
    with pytest.raises(EngineError, match="reads up to 20"):
        plan_graph(features(standin("10.3.0")), "encoder", "fp16", "encoder.fp16.onnx", inputs, (1, 1, 1), opset=21)
    assert plan_graph(features(standin("11.1.0")), "encoder", "fp16", "e.onnx", inputs, (1, 1, 1), opset=21).opset == 21


def test_dry_run_prints_the_plan_of_each_version_without_tensorrt(export_folder, capsys):
    assert main(["build", "--onnx", str(export_folder), "--precision", "int8", "--batch", "1,4,8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for version in VERSIONS:
        assert f"TensorRT {version} (stand-in" in out
    mixer_lines = [line for line in out.splitlines() if line.strip().startswith("mixer")]
    assert len(mixer_lines) == len(VERSIONS)
    assert all("fp32 graph mixer.onnx" in line and "clear BuilderFlag.TF32" in line for line in mixer_lines)
    assert "key_matrix 512x512 .. 512x512" in out and "int8 graph encoder.int8.onnx (opset 19)" in out


def test_build_without_out_or_dry_run_says_what_to_pass(export_folder, capsys):
    assert main(["build", "--onnx", str(export_folder)]) == 2
    assert "--out DIR" in capsys.readouterr().err
