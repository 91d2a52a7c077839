"""`anonymixer bench`: the report's structure, measured figures, MAC counting and percentile math."""

import contextlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from anonymixer.bench.macs import count_macs
from anonymixer.bench.peaks import PEAKS, custom_peak, find_peak, floor_ms, peak_for_gpu
from anonymixer.bench.stats import percentile, summarize
from anonymixer.cli import main
from anonymixer.errors import BenchError

ITERS = 3


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real run on the tiny model: torch + ort (fp32, int8) + trt (skipped here without TensorRT)."""
    out = tmp_path_factory.mktemp("bench")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):   # --json: the object goes to stdout, the rest to stderr
        code = main(["bench", "--model", "random:tiny", "--backends", "torch,ort,trt", "--precisions", "fp32,int8",
                     "--batch", "1,2", "--inflight", "1,2", "--warmup", "1", "--iters", str(ITERS),
                     "--video-frames", "4", "--peak-tflops", "1.0", "--out", str(out), "--json"])
    assert code == 0
    (out / "stdout.json").write_text(stdout.getvalue())
    return out, json.loads((out / "bench.json").read_text())


def measured_stats(data):
    for row in data["rows"]:
        for entry in row["batches"]:
            for stage, item in entry["stages"].items():
                yield row["label"], entry["batch"], stage, item


# ---- the command ---------------------------------------------------------------------------------

def test_bench_on_the_tiny_model_writes_json_markdown_and_png(bench_run):
    out, _ = bench_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "bench.md").read_text()
    assert "| row | B | encoder |" in text and "| torch fp32 | 1 |" in text and "| ort int8 | 2 |" in text


def test_whole_640x480_frames_are_measured_with_one_and_two_in_flight_in_every_row(bench_run):
    out, data = bench_run
    for row in data["rows"]:
        assert [item["inflight"] for item in row["video"]] == [1, 2]
        for item in row["video"]:
            assert item["size"] == [640, 480] and item["faces_per_frame"] == 1 and item["frames"] == 4
            assert item["fps"] > 0 and item["latency"]["n"] == 4
            assert 0 < item["latency"]["p50_ms"] <= item["latency"]["p99_ms"]
        assert row["video"][0]["vs_inflight_1"] == 1.0
    text = (out / "bench.md").read_text()
    assert "## Whole frames in flight (640x480, one face)" in text and "## ONNX Runtime session options" in text
    assert "INT8: avx2" in text


def test_the_video_rows_track_their_face_as_protect_video_does(tmp_path, monkeypatch):
    """The video rows are a video's frames (one track: the draw chosen once, the identity check every 30th
    frame), not photos (each frame chosen afresh, as the latency table's frame column is)."""
    from anonymixer.face import pipeline

    tracks: list[tuple[bool, int | None]] = []
    real_paste = pipeline.FaceProtector.paste

    def paste(self, work):
        tracks.append((work.frame.shape[:2] == (480, 640), *(face.track for face in work.result.faces)))
        return real_paste(self, work)

    monkeypatch.setattr(pipeline.FaceProtector, "paste", paste)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["bench", "--model", "random:tiny", "--backends", "torch", "--precisions", "fp32", "--batch", "1",
                     "--inflight", "1", "--warmup", "1", "--iters", "2", "--video-frames", "4",
                     "--out", str(tmp_path)]) == 0
    video = [track for is_video, track in tracks if is_video]
    photos = [track for is_video, track in tracks if not is_video]
    assert len(video) == 1 + 4 and len(set(video)) == 1 and video[0] is not None   # warm-up + timed: one track
    assert photos and all(track is None for track in photos)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["rows"][0]["video"][0]["identity_check"].startswith("off (random weights")
    assert "as `protect VIDEO` runs it" in (tmp_path / "bench.md").read_text()


def test_the_ort_int8_row_runs_the_cpu_integer_form(bench_run):
    _, data = bench_run
    row = next(r for r in data["rows"] if r["label"] == "ort int8")
    assert "QOperator form" in row["describe"]
    assert "graph_optimization_level" in data["settings"]["ort_session_options"]


def test_report_names_machine_versions_and_settings(bench_run):
    _, data = bench_run
    assert data["format"] == "anonymixer-bench"
    assert data["machine"]["cpu"] and data["machine"]["cores"] >= 1 and data["machine"]["ram_gb"] > 0
    for name in ("python", "numpy", "torch", "onnxruntime", "anonymixer"):
        assert data["versions"][name]
    assert data["settings"]["iters"] == ITERS and data["settings"]["batches"] == [1, 2]


def test_rows_start_with_the_torch_fp32_baseline_and_trt_is_skipped_with_a_reason(bench_run):
    _, data = bench_run
    assert [row["label"] for row in data["rows"]] == ["torch fp32", "ort fp32", "ort int8"]
    skipped = {(s["backend"], s["precision"]): s["reason"] for s in data["skipped"]}
    assert set(skipped) >= {("trt", "fp32"), ("trt", "int8"), ("torch", "int8")}
    assert "TensorRT" in skipped[("trt", "fp32")] and "doctor" in skipped[("trt", "fp32")]


def test_every_stage_and_the_whole_frame_are_measured_iters_times(bench_run):
    _, data = bench_run
    seen = set()
    for label, batch, stage, item in measured_stats(data):
        seen.add(stage)
        assert item["n"] == ITERS and len(item["samples_ms"]) == ITERS, (label, batch, stage)
        assert all(s > 0 for s in item["samples_ms"]), (label, batch, stage)
        assert item["p50_ms"] == percentile(item["samples_ms"], 50)
        assert item["min_ms"] <= item["p50_ms"] <= item["p90_ms"] <= item["p99_ms"] <= item["max_ms"]
        assert item["faces_per_s"] == pytest.approx(batch * 1000.0 / item["p50_ms"])
    assert seen == {"encoder", "mixer", "generator", "detect_align", "paste", "frame"}


def test_the_frames_hold_as_many_faces_as_the_batch(bench_run):
    _, data = bench_run
    assert all(entry["faces_in_frame"] == entry["batch"] for row in data["rows"] for entry in row["batches"])


def test_ratios_are_against_the_baseline_measured_in_the_same_run(bench_run):
    _, data = bench_run
    base = data["rows"][0]
    for row in data["rows"]:
        for entry, ref in zip(row["batches"], base["batches"], strict=True):
            expected = ref["networks"]["ms_per_face"] / entry["networks"]["ms_per_face"]
            assert entry["speedup"]["networks"] == pytest.approx(expected)
            assert entry["speedup"]["frame"] > 0
    assert all(entry["speedup"]["networks"] == 1.0 for entry in base["batches"])
    assert base["accuracy"]["psnr_db"] is None and base["accuracy"]["note"] == "reference row"
    ort_fp32, ort_int8 = data["rows"][1]["accuracy"]["psnr_db"], data["rows"][2]["accuracy"]["psnr_db"]
    assert ort_fp32 > 60 and 0 < ort_int8 < ort_fp32   # fp32 graphs match torch; int8 is lossy


def test_throughput_in_flight_is_measured_for_every_batch_and_depth(bench_run):
    _, data = bench_run
    for row in data["rows"]:
        assert {(i["batch"], i["inflight"]) for i in row["inflight"]} == {(1, 1), (1, 2), (2, 1), (2, 2)}
        for item in row["inflight"]:
            assert item["wall_s"] > 0 and item["faces"] == item["batches"] * item["batch"]
            assert item["faces_per_s"] == pytest.approx(item["faces"] / item["wall_s"])


def test_macs_floor_and_memory_are_positive_figures(bench_run):
    _, data = bench_run
    per_face = data["macs"]["per_face"]
    assert per_face["encoder"]["fp32"]["total"] > 0 and per_face["generator"]["fp32"]["total"] > 0
    assert per_face["encoder"]["int8"]["total"] == per_face["encoder"]["fp32"]["total"]
    assert data["peak"]["name"] == "custom"
    for row in data["rows"]:
        assert row["memory"]["host_peak_mb"] > 0
        for entry in row["batches"]:
            networks = entry["networks"]
            assert networks["gmac_per_s"] > 0
            assert networks["floor_ms_per_face"] == pytest.approx(floor_ms(networks["macs_per_face"], 1.0))
            assert networks["floor_fraction"] == pytest.approx(networks["floor_ms_per_face"] / networks["ms_per_face"])


def test_a_second_run_reuses_the_export_and_measures_anew(bench_run, tmp_path):
    out, first = bench_run
    second_out = out / "second"
    (second_out).mkdir()
    (second_out / "onnx").symlink_to(out / "onnx")
    assert main(["bench", "--model", "random:tiny", "--backends", "torch,ort", "--precisions", "fp32",
                 "--batch", "1", "--inflight", "1", "--warmup", "0", "--iters", "2", "--detector", "none",
                 "--out", str(second_out)]) == 0
    second = json.loads((second_out / "bench.json").read_text())
    assert "reused" in second["notes"][0]
    old = first["rows"][0]["batches"][0]["stages"]["encoder"]["samples_ms"]
    new = second["rows"][0]["batches"][0]["stages"]["encoder"]["samples_ms"]
    assert len(new) == 2 and new != old[:2]
    assert "frame" not in second["rows"][0]["batches"][0]["stages"]
    assert second["peak"] is None and "floor_fraction" not in second["rows"][0]["batches"][0]["networks"]


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["bench", "--model", "random:tiny", "--backends", "tflite", "--out", str(tmp_path)]) == 2
    assert "unknown backend tflite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--batch", "0,2"])


# ---- MAC counting --------------------------------------------------------------------------------

def model_of(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def weight(name, shape, dtype=np.float32):
    return onnx.numpy_helper.from_array(np.ones(shape, dtype), name)


def test_a_single_conv_counts_output_elements_times_kernel_volume():
    # Y (1, 4, 8, 8) from X (1, 3, 8, 8), 3x3 kernel, pad 1: 4*8*8 outputs x 3*3*3 MACs each.
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    model = model_of([conv], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight("w", (4, 3, 3, 3))])
    count = count_macs(model)
    assert count.total == 4 * 8 * 8 * 3 * 3 * 3 == 6912
    assert count.by_op == {"Conv": 6912} and count.uncounted == []


def test_strided_grouped_conv_counts_its_smaller_output_and_input_group():
    # groups=2: each output channel sees 2 of the 4 input channels; stride 2 halves H and W.
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], group=2)
    model = model_of([conv], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight("w", (6, 2, 3, 3))])
    assert count_macs(model).total == 6 * 4 * 4 * 2 * 3 * 3


def test_a_matmul_counts_m_n_k_per_batch_item():
    # (B, 5, 6) @ (6, 7) at batch 1 and at batch 3.
    matmul = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = model_of([matmul], [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 5, 6])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight("b", (6, 7))])
    assert count_macs(model).total == 5 * 7 * 6 == 210
    assert count_macs(model, batch=3).total == 3 * 210


def test_conv_transpose_and_gemm_follow_their_own_formulas():
    # ConvTranspose: every input element meets C_out/group * k*k weights. Gemm with transA: K = A.shape[0].
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2]),
             helper.make_node("Gemm", ["a", "b"], ["z"], transA=1)]
    model = model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4]),
                             helper.make_tensor_value_info("a", TensorProto.FLOAT, [10, 2])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                      helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                     [weight("w", (4, 2, 3, 3)), weight("b", (10, 5))])
    count = count_macs(model)
    assert count.by_op == {"ConvTranspose": 4 * 4 * 4 * 2 * 3 * 3, "Gemm": 2 * 5 * 10}


def test_a_dequantized_int8_weight_counts_like_the_float_one():
    nodes = [helper.make_node("DequantizeLinear", ["wq", "scale"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    model = model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [weight("wq", (4, 3, 3, 3), np.int8), weight("scale", (4,))])
    assert count_macs(model).total == 6912


# ---- percentiles and peaks -----------------------------------------------------------------------

def test_percentiles_interpolate_linearly_between_ranks():
    samples = [4.0, 1.0, 3.0, 2.0]              # sorted: 1 2 3 4; rank of q: 3 * q / 100
    assert percentile(samples, 50) == 2.5       # rank 1.5
    assert percentile(samples, 90) == pytest.approx(3.7)   # rank 2.7
    assert percentile(samples, 99) == pytest.approx(3.97)  # rank 2.97
    assert percentile(samples, 0) == 1.0 and percentile(samples, 100) == 4.0
    assert percentile([7.0], 99) == 7.0


def test_percentiles_agree_with_numpy():
    values = list(np.random.default_rng(0).exponential(10.0, 37))
    for q in (50, 90, 99):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_or_out_of_range_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_keeps_the_raw_samples_and_derives_faces_per_second():
    item = summarize([10.0, 20.0, 30.0], faces=4, timer="perf_counter")
    assert item["samples_ms"] == [10.0, 20.0, 30.0] and item["n"] == 3
    assert item["p50_ms"] == 20.0 and item["mean_ms"] == 20.0 and item["faces_per_s"] == 200.0


def test_floor_is_two_operations_per_mac_at_the_peak():
    assert floor_ms(10**12, 2.0) == pytest.approx(1000.0)
    peak = find_peak("jetson-orin-nano-8gb")
    assert peak.tflops("int8") == 2 * peak.tflops("fp16") and math.isclose(peak.tflops("fp32"), peak.tf32 or 0)
    assert custom_peak(5.0).tflops("int8") == 5.0


def test_gpus_are_found_by_name_word_for_word():
    assert peak_for_gpu("NVIDIA H100 PCIe") is PEAKS["h100-pcie"]
    assert peak_for_gpu("NVIDIA H100 80GB HBM3") is PEAKS["h100-sxm"]
    assert peak_for_gpu("NVIDIA L4") is PEAKS["l4"]
    assert peak_for_gpu("NVIDIA L40S") is None and peak_for_gpu("Orin (nvgpu)") is None


def test_an_unknown_peak_name_lists_the_known_ones():
    with pytest.raises(BenchError, match="jetson-agx-orin-64gb"):
        find_peak("tpu-v5")


def test_trt_stages_are_timed_with_cuda_events_around_the_engine_on_device_buffers(monkeypatch):
    """The TensorRT clock on the cuda-python stand-in: events give the samples, outputs come back right."""
    from anonymixer.bench.timers import TrtClock, choose_clock
    from anonymixer.runtime import cuda as cuda_module
    from fakecuda import CapturingCudart
    from test_trt_runtime import fake_backend, toy

    fake = CapturingCudart()
    monkeypatch.setattr(cuda_module, "_runtime", fake)
    clock = choose_clock(fake_backend(fake))
    assert isinstance(clock, TrtClock) and clock.timer == "cuda_event"
    face = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    timing = clock.time_stage("encoder", {"face": face}, warmup=1, iters=3)
    assert timing.samples == [0.25, 0.25, 0.25]   # the stand-in's cudaEventElapsedTime
    assert timing.warmup["settled"] and timing.warmup["calls"] == 10   # two windows of 5 equal calls
    np.testing.assert_allclose(timing.outputs["w_real"], toy("encoder", face=face)["w_real"], rtol=1e-6)
    assert not fake.blocks                         # every device and pinned buffer was freed


# ---- warm-up, timed calls, progress, trtexec, Jetson, --json --------------------------------------

def test_bench_json_is_one_object_on_stdout_matching_its_schema(bench_run):
    schemas = pytest.importorskip("anonymixer.schemas")
    pytest.importorskip("jsonschema", reason="dev extra")
    out, data = bench_run
    lines = (out / "stdout.json").read_text().splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    schemas.validate("bench", printed)
    assert printed["report"]["rows"][0]["label"] == data["rows"][0]["label"] == "torch fp32"


def test_every_timed_stage_records_its_warm_up(bench_run):
    _, data = bench_run
    for label, batch, stage, item in measured_stats(data):
        if stage in ("encoder", "mixer", "generator"):
            assert item["warmup"]["calls"] >= 1 and isinstance(item["warmup"]["settled"], bool), (label, batch, stage)
    assert "## Warm-up and timed calls per stage" in (bench_run[0] / "bench.md").read_text()


def test_warm_up_goes_on_until_the_medians_of_two_windows_agree():
    from anonymixer.bench.timers import Settle, warm_up

    times = iter([90.0, 60.0, 40.0, 30.0, 20.0, 10.0, 10.5, 9.5, 10.0, 10.0, 10.2, 9.9, 10.0, 10.1, 10.0] + [10.0] * 50)
    warm = warm_up(lambda: next(times), minimum=2, settle=Settle(window=5, tolerance=0.1))
    assert warm["settled"] and warm["calls"] == 13 and warm["last_ms"] == 10.0   # 10.5 vs 10.0


def test_warm_up_that_never_settles_stops_at_its_limit_and_says_so():
    from anonymixer.bench.timers import Settle, warm_up

    calls = iter(range(1, 1000))
    warm = warm_up(lambda: float(next(calls)) ** 2, minimum=2, settle=Settle(window=3, tolerance=0.01, max_calls=30))
    assert not warm["settled"] and warm["calls"] == 30


def test_warmup_zero_means_no_warm_up_calls():
    from anonymixer.bench.timers import warm_up

    assert warm_up(lambda: pytest.fail("called"), minimum=0)["calls"] == 0


def test_without_iters_the_timed_calls_reach_the_minimum_count_and_time_and_stop_at_the_maximum():
    from anonymixer.bench.timers import AutoIters, timed_calls

    samples, _ = timed_calls(lambda: 1.0, 0, None, auto=AutoIters(min_calls=7, min_s=0.0, max_calls=50))
    assert len(samples) == 7
    samples, _ = timed_calls(lambda: 1.0, 0, None, auto=AutoIters(min_calls=7, min_s=3600.0, max_calls=50))
    assert len(samples) == 50


def test_each_finished_row_is_one_progress_line_on_stderr(bench_run, capsys):
    out, _ = bench_run
    second = out / "progress"
    second.mkdir()
    (second / "onnx").symlink_to(out / "onnx")
    assert main(["bench", "--model", "random:tiny", "--backends", "torch,ort", "--precisions", "fp32", "--batch", "1",
                 "--inflight", "1", "--warmup", "0", "--iters", "2", "--detector", "none", "--out", str(second)]) == 0
    err = capsys.readouterr().err
    assert "bench: [1/2] torch fp32 in " in err and "bench: [2/2] ort fp32 in " in err
    assert "B=1 encoder" in err and "no warm-up (--warmup 0)" in err


def test_the_trtexec_line_of_a_stage_has_its_engine_batch_shapes_and_the_same_timing():
    from anonymixer.bench.measure import _trtexec

    shapes = {"w_real": (1, 100), "key_matrix": (100, 100), "key_offset": (1, 100), "w_prot": (1, 100)}
    opened = SimpleNamespace(folder=Path("engines/fp16"), precision="fp16",
                             stage=lambda name: SimpleNamespace(sample_shapes=shapes))
    line = _trtexec(opened, "mixer", 4, 200)
    assert line == ("trtexec --loadEngine=engines/fp16/mixer.fp16.engine --shapes=w_real:4x1x100 --noDataTransfers "
                    "--warmUp=2000 --duration=0 --iterations=200 --percentile=50,90,99")


def jetson_tree(root):
    """The files a Jetson AGX Orin shows (a few of them), under ``root``."""
    files = {"proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
             "etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081\n",
             "sys/devices/platform/17000000.gpu/devfreq/17000000.gpu/cur_freq": "1300500000",
             "sys/devices/platform/17000000.gpu/devfreq/17000000.gpu/min_freq": "1300500000",
             "sys/devices/platform/17000000.gpu/devfreq/17000000.gpu/max_freq": "1300500000",
             "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2201600",
             "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq": "2201600"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_jetsons_power_mode_and_clocks_are_read_and_recorded(tmp_path):
    from anonymixer.bench.jetson import describe, jetson_state

    jetson_tree(tmp_path)
    nvpmodel = SimpleNamespace(stdout="NV Power Mode: MAXN\n0\n", stderr="")
    state = jetson_state(tmp_path, run=lambda *a, **k: nvpmodel)
    assert state["model"] == "NVIDIA Jetson AGX Orin Developer Kit" and state["l4t"].startswith("R36")
    assert state["power_mode"] == {"name": "MAXN", "id": 0}
    assert state["gpu_mhz"] == {"now": 1300.5, "min": 1300.5, "max": 1300.5} and state["clocks_pinned"]
    assert state["cpu_mhz"] == {"now": [2201.6], "max": [2201.6]}
    assert "power mode MAXN" in describe(state) and "pinned" in describe(state)


def test_elsewhere_the_record_says_not_a_jetson(tmp_path, bench_run):
    from anonymixer.bench.jetson import is_jetson, jetson_state

    if is_jetson():
        pytest.skip("this machine is a Jetson")
    assert jetson_state(tmp_path) == {"jetson": False, "note": "not a Jetson"}
    assert bench_run[1]["machine"]["jetson"]["jetson"] is False
    assert "Jetson: not a Jetson" in (bench_run[0] / "bench.md").read_text()
