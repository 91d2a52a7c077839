"""The messages a newcomer reads first: --help texts, refusals, the hints that end a command."""

import argparse

import pytest

from anonymixer.cli import build_parser, main
from anonymixer.export.summary import next_steps


def subcommand_helps():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"anonymixer": parser.format_help(), **{name: p.format_help() for name, p in commands.choices.items()}}


def test_no_help_text_shows_literal_markup():
    marked = [name for name, text in subcommand_helps().items() if "``" in text]
    assert not marked


@pytest.mark.parametrize("command", ["export", "bench", "protect", "demo", "evaluate"])
def test_the_model_option_of_every_command_that_takes_one_names_faces64(command):
    assert "faces64" in subcommand_helps()[command]


def test_calibration_help_says_images_are_resized_to_the_models_input_size_not_always_256():
    text = " ".join(subcommand_helps()["export"].split())
    assert "resized to 256)" not in text and "model's input size" in text


def test_an_existing_key_file_is_refused_with_the_command_line_option_not_a_python_argument(tmp_path, capsys):
    path = tmp_path / "site.key"
    assert main(["keygen", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["keygen", "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "overwrite=" not in err


def manifest_with(precisions):
    graphs = {stage: {p: {"file": f"{stage}.{p}.onnx"} for p in precisions} for stage in ("encoder", "generator")}
    return {"graphs": graphs, "model": {"spec": "faces64"}}


def test_the_hint_after_an_fp32_export_names_fp32_and_how_to_add_the_others(tmp_path):
    lines = next_steps(tmp_path, manifest_with(["fp32"]))
    assert not any("fp16|int8" in line for line in lines)
    assert f"TensorRT: anonymixer build --onnx {tmp_path} --out ENGINE_DIR --precision fp32" in lines
    assert f"INT8:     anonymixer calibrate --onnx {tmp_path}" in lines
    assert any("--precision fp32,fp16" in line for line in lines)


def test_the_hint_after_a_full_export_offers_both_reduced_precisions(tmp_path):
    lines = next_steps(tmp_path, manifest_with(["fp32", "fp16", "int8"]))
    assert lines == [f"run it:   anonymixer protect --onnx {tmp_path} [--precision fp16|int8] ...",
                     f"TensorRT: anonymixer build --onnx {tmp_path} --out ENGINE_DIR --precision fp16|int8"]
