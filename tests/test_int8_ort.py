"""ONNX Runtime's CPU INT8 form: the sub-pixel rewrite of transposed convolutions is exact, and they quantize."""

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import onnxruntime as ort

from anonymixer.export.int8_ort import quantize_int8_ort, subpixel_conv_transposes


def upsampling_graph(c_in=6, c_out=5, seed=0):
    """x (B, c_in, H, W) -> ConvTranspose(stride 2, kernel 4, pads 1, bias) -> Relu -> y (B, c_out, 2H, 2W)."""
    rng = np.random.default_rng(seed)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((c_in, c_out, 4, 4)).astype(np.float32), "w")
    bias = onnx.numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b")
    nodes = [oh.make_node("ConvTranspose", ["x", "w", "b"], ["t"], name="up", kernel_shape=[4, 4], strides=[2, 2],
                          pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["t"], ["y"], name="relu")]
    graph = oh.make_graph(nodes, "up", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", c_in, 7, 9])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", c_out, 14, 18])],
                          [weight, bias])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def run(model_or_path, x):
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_subpixel_form_of_a_stride_2_transposed_convolution_gives_the_same_output():
    x = np.random.default_rng(1).standard_normal((2, 6, 7, 9)).astype(np.float32)
    reference = run(upsampling_graph(), x)
    rewritten = subpixel_conv_transposes(upsampling_graph())
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops and ops.count("Conv") == 4 and "DepthToSpace" in ops
    out = run(rewritten, x)
    assert out.shape == reference.shape == (2, 5, 14, 18)
    assert np.max(np.abs(out - reference)) < 1e-4 * np.max(np.abs(reference))


def test_transposed_convolutions_quantize_to_integer_convolutions_close_to_float(tmp_path):
    onnx.save(upsampling_graph(), str(tmp_path / "up.onnx"))
    rng = np.random.default_rng(2)
    calib = rng.standard_normal((8, 6, 7, 9)).astype(np.float32)
    report = quantize_int8_ort(tmp_path / "up.onnx", tmp_path / "up.int8-ort.onnx", {"x": calib})
    model = onnx.load(str(tmp_path / "up.int8-ort.onnx"))
    assert [n.op_type for n in model.graph.node].count("QLinearConv") == report["quantized_nodes"] == 4
    x = calib[:1]
    reference = run(upsampling_graph(), x)
    out = run(str(tmp_path / "up.int8-ort.onnx"), x)
    assert np.linalg.norm(out - reference) / np.linalg.norm(reference) < 0.05
