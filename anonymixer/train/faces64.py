"""Train faces64's encoder: aligned 64x64 face -> the DCGAN code that draws it.

    python -m anonymixer.train.faces64 --out runs/faces64 [--steps 2400] [--batch 48] [--seed 0]

Each step draws fresh codes ``z ~ N(0, I)`` and their faces ``x = G(z)`` from the frozen packaged
generator, degrades ``x`` as a camera crop would (``train.augment``), and fits the encoder ``E`` with

    loss = w_code * |E(x') - z|^2 / D  +  w_pixel * |G(E(x')) - x|_1  +  w_id * (1 - cos(F(G(E(x'))), F(x)))

where ``F`` is SFace (``models.sface``, the ONNX recogniser rebuilt in PyTorch; dlib stays the
judge in evaluation, so the teacher is not the judge). The identity term starts after
``--id-start`` of the steps, once the code loss has put the encoder near the right codes. The
learning rate follows a cosine schedule after a short warm-up. Everything is seeded; a progress bar
shows the losses. It writes to ``--out``: ``faces64_encoder.pt`` (the state dict, eval mode),
``log.jsonl`` (losses every ``--log-every`` steps), ``metrics.json`` (held-out figures: code
cosine, image PSNR and SFace cosine of G(E(x)) vs x on ``--eval-n`` faces from a separate seed) and
``command.txt``. On the 2-core CPU of this project's machines the defaults take under an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..atomic import replacing_file, write_json
from ..digest import sha256_file
from ..models.code_encoder import CodeEncoder, make_code_encoder
from ..models.configs import CodeEncoderConfig, DCGANConfig, faces64
from ..models.dcgan import Faces64Generator, build_faces64_generator, load_dcgan_state
from .augment import camera_crop

EVAL_SEED_OFFSET = 1_000_003  # held-out codes come from another stream than training codes


def sample_faces(generator: Faces64Generator, n: int, torch_rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z (n, 1, D), x (n, 3, 64, 64))``: codes ~ N(0, I) and their faces, no gradient."""
    z = torch.randn(n, 1, generator.config.nz, generator=torch_rng)
    with torch.no_grad():
        x = generator(z)
    return z, x


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


class IdentityLoss(nn.Module):
    """``1 - cos`` between SFace embeddings of two batches of faces64 images (the second is a target)."""

    def __init__(self) -> None:
        super().__init__()
        from ..models.sface import faces64_to_sface, load_sface

        self.sface = load_sface()
        self.prepare = faces64_to_sface

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        # channels_last: SFace's depthwise convolutions run about 2x faster so on the CPU.
        x = self.prepare(images.clamp(-1, 1)).contiguous(memory_format=torch.channels_last)
        return self.sface(x, normalize=True)

    def forward(self, images: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
        return 1.0 - (self.embed(images) * target_embedding).sum(1)


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 2 % of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_encoder(encoder: CodeEncoder, generator: Faces64Generator, n: int, seed: int,
                     identity: IdentityLoss | None, batch: int = 100) -> dict[str, float]:
    """Held-out figures on ``n`` clean generated faces: code cosine, PSNR, SFace cosine (means)."""
    encoder.eval()
    rng = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    cos, psnrs, ids, norms = [], [], [], []
    for start in range(0, n, batch):
        z, x = sample_faces(generator, min(batch, n - start), rng)
        w = encoder(x)
        x_hat = generator(w)
        cos.append(F.cosine_similarity(w.flatten(1), z.flatten(1), dim=1))
        psnrs.append(psnr(x_hat, x))
        norms.append(w.flatten(1).norm(dim=1))
        if identity is not None:
            ids.append((identity.embed(x_hat) * identity.embed(x)).sum(1))
    result = {"faces": n, "code_cosine": float(torch.cat(cos).mean()), "psnr_db": float(torch.cat(psnrs).mean()),
              "code_norm": float(torch.cat(norms).mean()), "prior_norm": math.sqrt(generator.config.nz)}
    if ids:
        result["sface_cosine"] = float(torch.cat(ids).mean())
    return result


def train(out: Path, steps: int, batch: int, seed: int, lr: float, w_code: float, w_pixel: float, w_id: float,
          id_start: float, id_batch: int, eval_n: int, log_every: int, threads: int,
          progress: bool = True, init: Path | None = None) -> dict[str, Any]:
    """Train the encoder (module docstring); returns the metrics written to ``out/metrics.json``."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)  # augmentation strengths (training data, not key material)
    torch_rng = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    config = faces64()
    assert isinstance(config.generator, DCGANConfig) and isinstance(config.encoder, CodeEncoderConfig)
    generator = build_faces64_generator(config.generator, load_dcgan_state())
    generator.requires_grad_(False)
    encoder = make_code_encoder(config.encoder, seed=seed)
    if init is not None:  # fine-tune: start from earlier weights (recorded in metrics.json with their sha256)
        encoder.load_state_dict(torch.load(init, map_location="cpu", weights_only=True), strict=True)
    encoder.train()
    identity = IdentityLoss() if w_id > 0 else None
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=1e-4)
    warmup, first_id_step = max(1, steps // 50), int(id_start * steps)
    log_path = out / "log.jsonl"
    started = time.perf_counter()
    with log_path.open("w") as log, tqdm(range(steps), desc="faces64 encoder", unit="step",
                                          disable=None if progress else True) as bar:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup)
            z, x = sample_faces(generator, batch, torch_rng)
            x_in = camera_crop(x, rng)
            w = encoder(x_in)
            loss_code = F.mse_loss(w, z)
            x_hat = generator(w)
            loss_pixel = F.l1_loss(x_hat, x)
            loss = w_code * loss_code + w_pixel * loss_pixel
            loss_id = torch.zeros(())
            if identity is not None and step >= first_id_step:
                # On the first id_batch samples only: SFace costs 5x the rest of the step.
                with torch.no_grad():
                    target = identity.embed(x[:id_batch])
                loss_id = identity(x_hat[:id_batch], target).mean()
                loss = loss + w_id * loss_id
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(code=f"{loss_code.item():.3f}", pix=f"{loss_pixel.item():.3f}", id=f"{loss_id.item():.3f}")
            if step % log_every == 0 or step == steps - 1:
                log.write(json.dumps({"step": step, "lr": optimizer.param_groups[0]["lr"], "code": loss_code.item(),
                                      "pixel": loss_pixel.item(), "identity": loss_id.item(),
                                      "seconds": round(time.perf_counter() - started, 1)}) + "\n")
                log.flush()
    encoder.eval()
    weights = out / "faces64_encoder.pt"
    with replacing_file(weights) as handle:
        torch.save({k: v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}, handle)
    metrics = {"train_seconds": round(time.perf_counter() - started, 1),
               "held_out": evaluate_encoder(encoder, generator, eval_n, seed, identity),
               "settings": {"steps": steps, "batch": batch, "seed": seed, "lr": lr, "w_code": w_code,
                            "w_pixel": w_pixel, "w_id": w_id, "id_start": id_start, "id_batch": id_batch, "threads": threads,
                            "init": None if init is None else {"file": str(init), "sha256": sha256_file(init)}},
               "machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu": platform.processor() or platform.machine()},
               "parameters": sum(p.numel() for p in encoder.parameters())}
    write_json(out / "metrics.json", metrics, indent=2)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m anonymixer.train.faces64", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/faces64", help="output folder (default runs/faces64)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--w-code", type=float, default=1.0)
    parser.add_argument("--w-pixel", type=float, default=1.0)
    parser.add_argument("--w-id", type=float, default=1.0, help="identity loss weight (0: no SFace)")
    parser.add_argument("--id-start", type=float, default=0.25, help="fraction of steps before the identity term")
    parser.add_argument("--id-batch", type=int, default=16, help="samples per step that get the identity term")
    parser.add_argument("--eval-n", type=int, default=1000, help="held-out faces for metrics.json")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", default=None, metavar="FILE",
                        help="start from these encoder weights (fine-tuning) instead of a fresh initialisation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("steps", "batch", "id_batch", "eval_n", "log_every", "threads"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.init is not None and not Path(args.init).is_file():
        print(f"error: --init {args.init}: no such file", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text("python -m anonymixer.train.faces64 " + " ".join(argv or sys.argv[1:]) + "\n")
    metrics = train(out, args.steps, args.batch, args.seed, args.lr, args.w_code, args.w_pixel, args.w_id,
                    args.id_start, args.id_batch, args.eval_n, args.log_every, args.threads,
                    init=None if args.init is None else Path(args.init))
    print(json.dumps(metrics["held_out"], indent=2))
    print(f"wrote {out / 'faces64_encoder.pt'} in {metrics['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
