import sys, math, json, time, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from anonymixer.atomic import replacing_file
from torch import nn
from anonymixer.models.configs import faces64
from anonymixer.models.dcgan import build_faces64_generator, load_dcgan_state
from anonymixer.models.sface import load_sface
from anonymixer.train.faces64 import IdentityLoss, sample_faces, lr_at
from anonymixer.train.augment import camera_crop
class Enc(nn.Module):
    def __init__(self, size, depth=13):
        super().__init__()
        s = load_sface(); self.size = size
        self.stem = s.stem; self.blocks = nn.Sequential(*list(s.blocks)[:depth])
        c = [m.pw.conv.out_channels for m in self.blocks][-1]
        side = size // 16
        self.reduce = nn.Sequential(nn.Conv2d(c, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(64 * side * side, 512), nn.ReLU(), nn.Linear(512, 100))
    def forward(self, x):
        if self.size != 64: x = F.interpolate(x, size=(self.size, self.size), mode='bilinear', align_corners=False)
        return self.head(self.reduce(self.blocks(self.stem(x))).flatten(1)).unsqueeze(1)
if __name__ == '__main__':
    mode, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1); torch.manual_seed(0)
    size = 112 if mode == '112' else 64
    E = Enc(size)
    for p in list(E.stem.parameters()) + list(E.blocks.parameters()): p.requires_grad_(False)
    print(sum(p.numel() for p in E.parameters())/1e6, 'M params', flush=True)
    c = faces64(); G = build_faces64_generator(c.generator, load_dcgan_state()); G.requires_grad_(False)
    idl = IdentityLoss(); rng = np.random.default_rng(0); trng = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW([p for p in E.parameters() if p.requires_grad], lr=2e-3, weight_decay=1e-4)
    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups: g['lr'] = lr_at(step, steps, 2e-3, 10)
        E.stem.eval(); E.blocks.eval(); E.reduce.train(); E.head.train()
        z, x = sample_faces(G, 48, trng); xi = camera_crop(x, rng)
        w = E(xi); lc = F.mse_loss(w, z); xh = G(w); lp = F.l1_loss(xh, x); loss = lc + lp
        if step >= steps // 4:
            with torch.no_grad(): t = idl.embed(x[:16])
            li = idl(xh[:16], t).mean(); loss = loss + li
        else: li = torch.zeros(())
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 20 == 0: print(step, round(lc.item(),3), round(lp.item(),3), round(li.item(),3), round(time.perf_counter()-t0), flush=True)
    E.eval()
    with replacing_file(Path(out)) as handle:  # atomic
        torch.save(E.state_dict(), handle)
