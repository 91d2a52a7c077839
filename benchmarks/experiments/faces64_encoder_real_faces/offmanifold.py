import sys, math, json, time, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from anonymixer.atomic import replacing_file
from anonymixer.models.configs import faces64
from anonymixer.models.dcgan import build_faces64_generator, load_dcgan_state
from anonymixer.models.bundle import faces64_bundle
from anonymixer.train.faces64 import IdentityLoss, sample_faces, lr_at
from anonymixer.train.augment import camera_crop, gaussian_blur
steps, out, n_off = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lr0 = float(sys.argv[4]) if len(sys.argv) > 4 else 5e-4
torch.set_num_threads(2); torch.manual_seed(0)
b = faces64_bundle(); E = b.build_encoder(); G = b.build_generator(); G.requires_grad_(False)
idl = IdentityLoss(); rng = np.random.default_rng(0); trng = torch.Generator().manual_seed(0)
yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing='ij')
def inner_mask(n):
    # ellipse around the inner face (eyes to mouth), feathered; random size
    ax = torch.as_tensor(rng.uniform(0.45, 0.65, n), dtype=torch.float32).view(-1, 1, 1)
    ay = torch.as_tensor(rng.uniform(0.55, 0.8, n), dtype=torch.float32).view(-1, 1, 1)
    r = (xx / ax) ** 2 + ((yy - 0.12) / ay) ** 2
    return torch.sigmoid((1 - r) * 8).unsqueeze(1)
def elastic(x):
    n = x.shape[0]
    d = torch.as_tensor(rng.standard_normal((n, 2, 4, 4)), dtype=torch.float32) * torch.as_tensor(rng.uniform(0.02, 0.06, (n, 1, 1, 1)), dtype=torch.float32)
    d = F.interpolate(d, size=(64, 64), mode='bicubic', align_corners=True).permute(0, 2, 3, 1)
    base = torch.stack([xx, yy], -1).unsqueeze(0)
    return F.grid_sample(x, base + d, mode='bilinear', padding_mode='reflection', align_corners=True)
def off_manifold(x):
    n = x.shape[0]; perm = torch.as_tensor(rng.permutation(n))
    m = inner_mask(n)
    swap = x * m + x[perm] * (1 - m)  # inner face of one, context of another
    use_swap = torch.as_tensor(rng.random(n) < 0.5).view(-1, 1, 1, 1)
    y = torch.where(use_swap, swap, x)
    return elastic(y)
E.train()
opt = torch.optim.AdamW(E.parameters(), lr=lr0, weight_decay=1e-4)
t0 = time.perf_counter()
for step in range(steps):
    for g in opt.param_groups: g['lr'] = lr_at(step, steps, lr0, 10)
    z, x = sample_faces(G, 48, trng)
    with torch.no_grad(): x_off = off_manifold(x[:n_off])
    target = torch.cat([x_off, x[n_off:]])
    xin = camera_crop(target, rng)
    w = E(xin); xh = G(w)
    lc = F.mse_loss(w[n_off:], z[n_off:]); lp = F.l1_loss(xh, target)
    k = 16
    with torch.no_grad(): t = idl.embed(target[:k])
    li = idl(xh[:k], t).mean()
    loss = lc + lp + li
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 20 == 0: print(step, round(lc.item(),3), round(lp.item(),3), round(li.item(),3), round(time.perf_counter()-t0), flush=True)
E.eval()
with replacing_file(Path(out)) as handle:  # atomic
    torch.save({k: v.detach().clone().contiguous() for k, v in E.state_dict().items()}, handle)
