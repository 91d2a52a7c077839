"""ONNX export of the four graphs (tiny model): FP32 parity, manifest, FP16 islands, INT8 Q/DQ, accuracy."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from anonymixer.errors import ExportError
from anonymixer.export.graphfile import check_graph, load_graph, open_session, relative_error, save_graph
from anonymixer.export.layout import GRAPHS, PRECISIONS, graph_filename
from anonymixer.export.onnx import export_onnx
from anonymixer.export.precision import add_precisions
from anonymixer.runtime.base import STAGE_IO
from anonymixer.runtime.torch import build_stage_modules

# Measured on random:tiny (seed 0, 32 synthetic calibration faces, minmax): FP16 75.2 dB, INT8 40.8 dB
# image PSNR against FP32. The bounds leave room for other CPUs and onnxruntime versions.
FP16_MIN_PSNR = 60.0
INT8_MIN_PSNR = 35.0
# ONNX Runtime's CPU form (uint8 activations per tensor) on random:tiny: 31.2 dB, generator relative
# error 0.127 (its 64 px random generator; random:ffhq256 measured 41.2 dB and 0.059).
INT8_ORT_MIN_PSNR = 28.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    export_onnx("random:tiny", out, precisions=("fp32", "fp16", "int8"), progress=False)
    return out


@pytest.fixture(scope="module")
def manifest(export_dir):
    return json.loads((export_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def modules(tiny_bundle):
    return build_stage_modules(tiny_bundle).modules


def stage_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"encoder": {"face": rng.uniform(-1, 1, (batch, 3, 256, 256)).astype(np.float32)},
            "mapping": {"z": rng.standard_normal((batch, 64)).astype(np.float32)},
            "mixer": {"w_real": rng.standard_normal((batch, 10, 64)).astype(np.float32),
                      "key_matrix": rng.standard_normal((64, 64)).astype(np.float32) / 8,
                      "key_offset": rng.standard_normal((10, 64)).astype(np.float32)},
            "generator": {"w_prot": 0.3 * rng.standard_normal((batch, 10, 64)).astype(np.float32)}}


def run(path, feeds):
    return open_session(path).run(None, feeds)[0]


@pytest.mark.parametrize("batch", [1, 3])
def test_fp32_graphs_match_torch(export_dir, modules, batch):
    for stage, feeds in stage_inputs(batch).items():
        with torch.no_grad():
            ref = modules[stage](*[torch.from_numpy(feeds[n]) for n in STAGE_IO[stage][0]]).numpy()
        out = run(export_dir / graph_filename(stage), feeds)
        assert out.shape == ref.shape
        assert relative_error(out, ref) <= 1e-5, stage


def test_manifest_records_passing_parity_and_a_harmless_simplification(manifest):
    for stage in GRAPHS:
        parity = manifest["graphs"][stage]["fp32"]["parity"]
        assert parity["passed"] and parity["batch_1"] <= 1e-5 and parity["batch_3"] <= 1e-5
        assert parity["slim_vs_unsimplified"] <= 1e-6


def test_mixer_maps_masked_layers_with_batch_free_key_material_and_copies_the_rest(export_dir, manifest):
    for batch in (1, 3):
        feeds = stage_inputs(batch, seed=batch)["mixer"]
        w_prot = run(export_dir / "mixer.onnx", feeds)
        assert np.array_equal(w_prot[:, [0, 1, 2, 8, 9]], feeds["w_real"][:, [0, 1, 2, 8, 9]])
        assert not np.allclose(w_prot[:, 3:8], feeds["w_real"][:, 3:8])
    assert manifest["mixer_mode"] == "project" and manifest["project_rank"] == 32 and manifest["radius_guard"] is True


@pytest.mark.parametrize("mode", ["rotate", "project", "swap", "learned"])
def test_mixer_graph_matches_torch_in_every_mode(tmp_path, tiny_bundle, mode):
    from tqdm import tqdm

    from anonymixer.export.onnx import export_stage, reference_run

    built = build_stage_modules(tiny_bundle, mixer_mode=mode, project_rank=8)
    with torch.no_grad():
        feeds, refs = reference_run(built, batch=3, seed=0)
    (tmp_path / "raw").mkdir()
    entry = export_stage("mixer", built.modules["mixer"], feeds["mixer"], refs["mixer"], tmp_path / "raw", tmp_path,
                         17, False, tqdm(disable=True))
    assert entry["parity"]["passed"], entry["parity"]
    assert [i["shape"] for i in entry["inputs"]] == [["batch", 10, 64], [64, 64], [10, 64]]


def test_export_writes_the_code_statistics(export_dir, manifest):
    from anonymixer import codestats

    stats = codestats.load(export_dir)
    assert manifest["code_stats"] == codestats.STATS_FILE
    assert stats.dim == 64 and np.all(stats.eigenvalues > 0)


def test_manifest_hashes_and_sizes_match_every_file(export_dir, manifest):
    files = manifest["files"]
    on_disk = {p.name for p in export_dir.iterdir() if p.name != "manifest.json"}
    assert set(files) == on_disk
    for name, info in files.items():
        assert hashlib.sha256((export_dir / name).read_bytes()).hexdigest() == info["sha256"]
        assert (export_dir / name).stat().st_size == info["bytes"]
    for stage in GRAPHS:
        for precision in PRECISIONS:
            entry = manifest["graphs"][stage][precision]
            assert entry["file"] == graph_filename(stage, precision)
            assert entry["sha256"] == files[entry["file"]]["sha256"]


def test_manifest_describes_names_shapes_and_dtypes_with_a_dynamic_batch(export_dir, manifest):
    expected = {"face": ["batch", 3, 256, 256], "z": ["batch", 64], "w_real": ["batch", 10, 64],
                "w_key": ["batch", 10, 64], "w_prot": ["batch", 10, 64], "image": ["batch", 3, 64, 64],
                "key_matrix": [64, 64], "key_offset": [10, 64]}
    assert (manifest["n_latent"], manifest["style_dim"], manifest["output_resolution"]) == (10, 64, 64)
    assert manifest["model"]["spec"] == "random:tiny" and manifest["model"]["is_random"]
    assert len(manifest["model"]["weights_sha256"]) == 64
    for stage, (inputs, outputs) in STAGE_IO.items():
        for precision in PRECISIONS:
            entry = manifest["graphs"][stage][precision]
            assert [i["name"] for i in entry["inputs"]] == list(inputs)
            assert [o["name"] for o in entry["outputs"]] == list(outputs)
            for tensor in entry["inputs"] + entry["outputs"]:
                shape = expected[tensor["name"]]
                assert tensor["shape"] == shape and tensor["dtype"] == "float32", (stage, precision, tensor)
            session = open_session(export_dir / entry["file"])
            assert [i.type for i in session.get_inputs()] == ["tensor(float)"] * len(inputs)
            assert [o.type for o in session.get_outputs()] == ["tensor(float)"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_graphs_are_portable(export_dir, precision):
    for stage in GRAPHS:
        model = load_graph(export_dir / graph_filename(stage, precision))
        initializers = {t.name: t for t in model.graph.initializer}
        producers = {o: n for n in model.graph.node for o in n.output}
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        assert not any(n.op_type == "ScatterND" for n in model.graph.node)
        for node in model.graph.node:
            if node.op_type in ("Conv", "ConvTranspose"):
                weight = node.input[1]
                if weight not in initializers:  # INT8: a DequantizeLinear of an INT8 initializer
                    dq = producers[weight]
                    assert dq.op_type == "DequantizeLinear" and dq.input[0] in initializers, node.name
        check_graph(export_dir / graph_filename(stage, precision))


def tensor_types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def test_fp16_generator_runs_feature_maps_in_fp16_and_styles_demodulation_and_rgb_in_fp32(export_dir):
    model = load_graph(export_dir / "generator.fp16.onnx")
    types = tensor_types(model)
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    nodes = {n.name: n for n in model.graph.node}
    styled = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and "/convs." in n.name
              and "blur" not in n.name]
    assert styled and all(types[n.output[0]] == fp16 and types[n.input[1]] == fp16 for n in styled)
    islands = [n for n in nodes.values() if "modulation" in n.name or n.op_type in ("MatMul", "Sqrt", "ReduceMax")]
    assert islands and all(types[n.output[0]] == fp32 for n in islands)
    rgb = [n for n in nodes.values() if "/to_rgbs." in n.name and "upsample" in n.name]
    assert rgb and all(types[o] == fp32 for n in rgb for o in n.output)
    assert any(n.op_type == "Cast" for n in model.graph.node)


def test_fp16_mapping_and_mixer_stay_fp32(export_dir):
    for stage in ("mapping", "mixer"):
        model = load_graph(export_dir / graph_filename(stage, "fp16"))
        assert onnx.TensorProto.FLOAT16 not in tensor_types(model).values()


def test_reduced_precisions_run_on_ort_cpu_within_the_stated_bounds(export_dir, manifest):
    accuracy = json.loads((export_dir / "accuracy.json").read_text())["precisions"]
    assert accuracy["fp16"]["pipeline"]["image_psnr_db"] >= FP16_MIN_PSNR
    assert accuracy["int8"]["pipeline"]["image_psnr_db"] >= INT8_MIN_PSNR
    assert accuracy["fp16"]["stages"]["encoder"]["relative_error"] <= 1e-3
    assert accuracy["fp16"]["stages"]["generator"]["relative_error"] <= 5e-3
    assert accuracy["int8"]["stages"]["encoder"]["relative_error"] <= 1e-2
    assert accuracy["int8"]["stages"]["generator"]["relative_error"] <= 0.1
    assert manifest["accuracy"]["image_psnr_db"]["int8"] == accuracy["int8"]["pipeline"]["image_psnr_db"]
    feeds = stage_inputs(2)
    for precision in ("fp16", "int8"):
        for stage in GRAPHS:
            out = run(export_dir / graph_filename(stage, precision), feeds[stage])
            assert out.dtype == np.float32 and np.isfinite(out).all()


def test_int8_convolutions_sit_between_qdq_pairs_with_zero_points_of_0(export_dir, manifest):
    for stage in ("encoder", "generator"):
        model = load_graph(export_dir / graph_filename(stage, "int8"))
        initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        producers = {o: n for n in model.graph.node for o in n.output}
        qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert qdq
        for node in qdq:
            zero_point = initializers[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        kept = manifest["graphs"][stage]["int8"]["int8"]["kept_fp"]
        convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
        quantized = [n for n in convs if n.name not in kept]
        assert len(quantized) == manifest["graphs"][stage]["int8"]["int8"]["quantized_nodes"] > 0
        for conv in quantized:
            x_dq, w_dq = producers[conv.input[0]], producers[conv.input[1]]
            assert x_dq.op_type == w_dq.op_type == "DequantizeLinear", conv.name
            assert producers[x_dq.input[0]].op_type == "QuantizeLinear"
            weight, scale = initializers[w_dq.input[0]], initializers[w_dq.input[1]]
            assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],)  # per channel, axis 0
        fp16_types = tensor_types(load_graph(export_dir / graph_filename(stage, "fp16")))
        for conv in convs:
            if conv.name in kept:  # float weights, of the type the FP16 graph gives them
                weight = conv.input[1]
                assert weight in initializers and initializers[weight].dtype in (np.float16, np.float32)
                assert onnx.helper.tensor_dtype_to_np_dtype(fp16_types[weight]) == initializers[weight].dtype


def conv_transpose_weight_forms(model):
    """``{node name: "float" | "axis N" | "per tensor"}`` for every ConvTranspose of ``model``."""
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    forms = {}
    for node in model.graph.node:
        if node.op_type != "ConvTranspose":
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            forms[node.name] = "float"
        elif initializers[dq.input[1]].size == 1:
            forms[node.name] = "per tensor"
        else:
            forms[node.name] = f"axis {next((a.i for a in dq.attribute if a.name == 'axis'), 1)}"
    return forms


def test_int8_deconvolutions_are_float_by_default_and_the_choice_is_in_the_manifest(export_dir, manifest):
    forms = conv_transpose_weight_forms(load_graph(export_dir / "generator.int8.onnx"))
    assert forms and set(forms.values()) == {"float"}
    assert manifest["calibration"]["int8_deconv"] == "float"
    assert manifest["graphs"]["generator"]["int8"]["int8"]["deconv"] == "float"


def test_int8_deconvolutions_on_request_are_quantized_per_input_channel_as_tensorrt_supports(export_dir, tmp_path):
    folder = tmp_path / "axis0"
    shutil.copytree(export_dir, folder)
    manifest = add_precisions(folder, ["int8"], calib_synthetic=4, int8_deconv="axis0", progress=False)
    forms = conv_transpose_weight_forms(load_graph(folder / "generator.int8.onnx"))
    assert forms and set(forms.values()) == {"axis 0"}   # never axis 1 (NVIDIA/TensorRT#2380)
    assert manifest["calibration"]["int8_deconv"] == "axis0"
    assert manifest["accuracy"]["image_psnr_db"]["int8"] >= INT8_MIN_PSNR


def test_int8_graphs_for_strongly_typed_builds_have_fp16_scales_and_the_fp16_graphs_types(export_dir):
    for stage in ("encoder", "generator"):
        model = load_graph(export_dir / graph_filename(stage, "int8"))
        assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
        types = tensor_types(model)
        qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert qdq and {types[n.input[1]] for n in qdq} == {onnx.TensorProto.FLOAT16}
        fp16_types = tensor_types(load_graph(export_dir / graph_filename(stage, "fp16")))
        fp16_graph = {n.name: n for n in load_graph(export_dir / graph_filename(stage, "fp16")).graph.node}
        compared = 0
        for node in model.graph.node:   # every node of the FP16 graph keeps its output type in INT8
            twin = fp16_graph.get(node.name)
            if twin is not None and node.op_type == twin.op_type and node.output[0] in types:
                assert types[node.output[0]] == fp16_types[twin.output[0]], node.name
                compared += 1
        assert compared > len(qdq) // 4


def test_fp16_encoder_resizes_its_feature_maps_in_fp16(export_dir):
    model = load_graph(export_dir / "encoder.fp16.onnx")
    types = tensor_types(model)
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resizes and all(types[n.output[0]] == onnx.TensorProto.FLOAT16 for n in resizes)


def test_int8_keeps_fir_filters_and_rgb_convolutions_in_float(manifest):
    kept = manifest["graphs"]["generator"]["int8"]["int8"]["kept_fp"]
    assert any("blur" in n and "FIR" in why for n, why in kept.items())
    assert any("to_rgb" in n and "RGB" in why for n, why in kept.items())
    assert manifest["calibration"]["source"] == "synthetic" and manifest["calibration"]["samples"] == 32


def test_int8_for_the_cpu_runs_integer_convolutions_and_keeps_the_same_layers_in_float(export_dir, manifest):
    for stage in ("encoder", "generator"):
        entry = manifest["graphs"][stage]["int8-ort"]
        assert entry["file"] == f"{stage}.int8-ort.onnx"
        model = load_graph(export_dir / entry["file"])
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("QLinearConv") == entry["int8"]["quantized_nodes"] > 0
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops   # float in, float out
        kept = entry["int8"]["kept_fp"]
        assert set(kept) == {n for n, why in manifest["graphs"][stage]["int8"]["int8"]["kept_fp"].items()
                             if n in {m.name for m in model.graph.node if m.op_type == "Conv"}}
        assert entry["int8"]["form"].startswith("QOperator") and "cpu_flags" in entry["int8"]
    for stage in ("mapping", "mixer"):
        assert "int8-ort" not in manifest["graphs"][stage]   # FP32 in every precision: nothing to quantize


def test_int8_for_the_cpu_is_in_the_accuracy_report_within_the_int8_bound(export_dir, manifest):
    accuracy = json.loads((export_dir / "accuracy.json").read_text())["precisions"]
    assert accuracy["int8-ort"]["pipeline"]["image_psnr_db"] >= INT8_ORT_MIN_PSNR
    assert accuracy["int8-ort"]["stages"]["encoder"]["relative_error"] <= 1e-2
    assert accuracy["int8-ort"]["stages"]["generator"]["relative_error"] <= 0.2
    assert accuracy["int8-ort"]["stages"]["mixer"]["relative_error"] == 0.0
    assert manifest["accuracy"]["image_psnr_db"]["int8-ort"] == accuracy["int8-ort"]["pipeline"]["image_psnr_db"]
    assert all(n in manifest["files"] for n in ("encoder.int8-ort.onnx", "generator.int8-ort.onnx"))


def test_the_cpu_backend_runs_int8_in_the_cpu_form_and_a_gpu_provider_list_keeps_the_qdq_form(export_dir):
    from anonymixer.runtime.manifest import ExportManifest
    from anonymixer.runtime.ort import OrtBackend, choose_graph

    with OrtBackend(export_dir, precision="int8", providers="cpu") as backend:
        assert backend.precisions == {"encoder": "int8-ort", "mapping": "int8", "mixer": "int8",
                                      "generator": "int8-ort"}
        assert "QOperator" in backend.describe()
        out = backend.stage("generator").run(stage_inputs(1)["generator"])["image"]
        assert out.dtype == np.float32 and np.isfinite(out).all()
    gpu = choose_graph(ExportManifest(export_dir), "encoder", "int8", cpu_only=False)
    assert gpu.path.name == "encoder.int8.onnx"


def test_external_data_graphs_load_check_and_run_the_same(export_dir, tmp_path):
    files = save_graph(load_graph(export_dir / "encoder.onnx"), tmp_path / "encoder.onnx", external_data=True)
    assert files == ["encoder.onnx", "encoder.onnx.data"]
    assert (tmp_path / "encoder.onnx").stat().st_size < 100_000 < (tmp_path / "encoder.onnx.data").stat().st_size
    check_graph(tmp_path / "encoder.onnx")
    feeds = stage_inputs(1)["encoder"]
    assert np.array_equal(run(tmp_path / "encoder.onnx", feeds), run(export_dir / "encoder.onnx", feeds))


def one_line(message):
    return len(str(message).strip().splitlines()) == 1


def test_a_truncated_onnx_file_is_a_one_line_error_naming_it(export_dir, tmp_path):
    broken = tmp_path / "encoder.onnx"
    data = (export_dir / "encoder.onnx").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    for action in (lambda: load_graph(broken), lambda: open_session(broken)):
        with pytest.raises(ExportError) as error:
            action()
        assert str(broken) in str(error.value) and one_line(error.value)


def test_calibrating_a_folder_with_a_corrupt_graph_names_the_file(export_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_dir, folder)
    (folder / "generator.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ExportError) as error:
        add_precisions(folder, ["int8"], progress=False)
    assert "generator.onnx" in str(error.value) and one_line(error.value)


def test_a_missing_calibration_folder_is_a_one_line_error(export_dir, tmp_path):
    with pytest.raises(ExportError) as error:
        add_precisions(export_dir, ["int8"], calib=tmp_path / "nowhere", progress=False)
    assert "nowhere" in str(error.value) and "no such calibration folder" in str(error.value)
    assert one_line(error.value)


def test_a_calibration_folder_without_usable_images_is_a_one_line_error(export_dir, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(ExportError) as error:
        add_precisions(export_dir, ["int8"], calib=folder, progress=False)
    assert str(folder) in str(error.value) and "no usable images" in str(error.value)
    assert one_line(error.value)


def test_a_keep_fp_pattern_that_matches_nothing_is_a_one_line_error(export_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_dir, folder)
    with pytest.raises(ExportError) as error:
        add_precisions(folder, ["int8"], calib_synthetic=4, keep_fp=["no_such_layer"], progress=False)
    assert "no_such_layer" in str(error.value) and one_line(error.value)


def test_unknown_precision_and_opset_are_refused_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="bf16"):
        export_onnx("random:tiny", tmp_path, precisions=("fp32", "bf16"), progress=False)
    with pytest.raises(ExportError, match="opset 11"):
        export_onnx("random:tiny", tmp_path, opset=11, progress=False)
    with pytest.raises(ExportError, match="TensorRT 10.x parses up to 20"):
        export_onnx("random:tiny", tmp_path, opset=21, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_calibrate_needs_no_pytorch(export_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_dir, folder)
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "from anonymixer.export.precision import add_precisions\n"
            f"m = add_precisions({str(folder)!r}, ['int8'], calib_synthetic=4, progress=False)\n"
            "assert m['calibration']['samples'] == 4\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ANONYMIXER_SLOW"),
                    reason="1-4 min on 2 cores and 9 GB of memory: set ANONYMIXER_SLOW=1")
def test_ffhq256_export_completes_and_passes_parity(tmp_path):
    manifest = export_onnx("random:ffhq256", tmp_path, progress=False)
    assert all(manifest["graphs"][s]["fp32"]["parity"]["passed"] for s in GRAPHS)
    assert manifest["graphs"]["encoder"]["fp32"]["external_data"] == ["encoder.onnx.data"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_plans_of_the_exported_graphs_build_mapping_and_mixer_fp32_and_keys_at_batch_1(export_dir, precision):
    from anonymixer.runtime.buildplan import STANDIN_FLAGS, features, plan_build, standin
    from anonymixer.runtime.manifest import ExportManifest

    for version in STANDIN_FLAGS:
        plans = {p.stage: p for p in plan_build(features(standin(version)), ExportManifest(export_dir), precision,
                                                (1, 2, 8))}
        for stage in ("mapping", "mixer"):
            graph = load_graph(export_dir / plans[stage].graph_file)
            assert plans[stage].graph_precision == "fp32" and "TF32" in plans[stage].cleared_flags
            assert onnx.TensorProto.FLOAT16 not in tensor_types(graph).values()
        for name in ("key_matrix", "key_offset"):      # key material: one fixed shape, no batch range
            low, opt, high = plans["mixer"].profile[name]
            assert low == opt == high and len(low) == 2
        assert all(p.strongly_typed and not p.builder_flags for p in plans.values())
        assert plans["generator"].opset == (19 if precision == "int8" else 17)
