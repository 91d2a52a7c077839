"""The synthetic evaluation protocol on the tiny random model with a pixel 'recogniser' (fast, no dlib)."""

import json

import cv2
import numpy as np
import pytest

from anonymixer.cli import main
from anonymixer.errors import AnonymixerError
from anonymixer.eval.fr import Scoring
from anonymixer.eval.synthetic import SyntheticConfig, augment, evaluate_synthetic
from anonymixer.eval.synthetic_report import row_figures, write_synthetic_reports


class PixelRecognizer(Scoring):
    """Templates = a 12x12 grey thumbnail of the crop: identities are their pixels."""

    name, input_size, metric, threshold, licence = "pixels", 48, "euclidean", None, "test"

    def align(self, image_bgr, landmarks5):
        return cv2.resize(image_bgr, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)

    def embed(self, crops):
        grey = crops.astype(np.float32).mean(axis=3)
        return np.stack([cv2.resize(g, (12, 12), interpolation=cv2.INTER_AREA).ravel() for g in grey]) / 255.0

    def describe(self):
        return "pixels"


@pytest.fixture(scope="module")
def result(tiny_bundle):
    config = SyntheticConfig(model=tiny_bundle, identities=12, modes=("rotate", "swap"), ranks=(8,),
                             through_encoder=False, code_noise=0.2, batch=8)
    return evaluate_synthetic(config, fr=PixelRecognizer())


def test_every_mode_reports_every_protocol(result):
    assert list(result.modes) == ["rotate", "swap"] and [r["rank"] for r in result.sweep] == [8]
    for row in [*result.modes.values(), *result.sweep]:
        figures = row_figures(row)
        assert set(figures) == {"eer", "tar", "psr", "d_sys", "revocability", "asr_stolen", "asr_no_key"}
        assert all(v is not None and 0.0 <= v <= 1.0 for k, v in figures.items() if k != "tar")


def test_swap_loses_utility_that_rotate_keeps(result):
    """tiny swaps 5 of its 10 layers (faces64: all of its one), so swap keeps some identity here."""
    swap, rotate = row_figures(result.modes["swap"]), row_figures(result.modes["rotate"])
    assert rotate["tar"] > swap["tar"] + 0.2


def test_stolen_rotate_key_undoes_the_protection_of_known_codes(result):
    """Generator-only: the attacker is handed the protected code, so a rotation is undone exactly."""
    assert row_figures(result.modes["rotate"])["asr_stolen"] >= row_figures(result.modes["rotate"])["asr_no_key"]


def test_reports_are_written(result, tmp_path):
    paths = write_synthetic_reports(result, tmp_path)
    assert sorted(p.name for p in paths) == ["faces.png", "project_sweep.png", "synthetic.json", "synthetic.md"]
    data = json.loads((tmp_path / "synthetic.json").read_text())
    assert set(data["modes"]) == {"rotate", "swap"} and len(data["project_sweep"]) == 1
    assert "| swap |" in (tmp_path / "synthetic.md").read_text()


def test_augment_changes_the_image_reproducibly():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a = augment(image, np.random.default_rng(1))
    b = augment(image, np.random.default_rng(1))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, image)


def test_unknown_mode_is_refused(tiny_bundle):
    with pytest.raises(AnonymixerError, match="unknown mixer mode"):
        evaluate_synthetic(SyntheticConfig(model=tiny_bundle, identities=4, modes=("shuffle",)), fr=PixelRecognizer())


def test_synthetic_cannot_be_combined_with_a_data_folder(tmp_path, capsys):
    assert main(["evaluate", "--synthetic", "10", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) != 0
    assert "--synthetic runs on --model" in capsys.readouterr().err


def test_the_sweep_ranks_come_from_the_command_line(capsys):
    from anonymixer.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--synthetic", "10", "--ranks", "25,50", "--out", "o"])
    assert args.ranks == (25, 50)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--synthetic", "10", "--ranks", "0,50", "--out", "o"])
    assert "expected positive integers" in capsys.readouterr().err
