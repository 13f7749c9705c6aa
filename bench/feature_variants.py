"""Variants of the feature-space autoencoder tried on magnetic tile (2026-12-06; `codes`, 2026-12-07, became
feature-cae's memory of normal codes, the others were not kept): the same cached
EfficientNet-Lite0 features and the same merge as `feature-cae` (3 x 3 neighbourhood average counting the padding,
per-channel standardisation), 40 epochs, maps blurred with sigma 4 and the image score their maximum, as in
../shared/tools/feature_probe.py. A measurement, not project code: what each variant changes is in VARIANTS.

    .venv/bin/python bench/feature_variants.py cache DATA_DIR --size 224 --out features.pt
    .venv/bin/python bench/feature_variants.py fit features.pt --taps 8,16 --variants knn,plain,mask,noise,memory
    .venv/bin/python bench/feature_variants.py fit features.pt --taps 4,8,16 --resolution 8 --variants plain
    .venv/bin/python bench/feature_variants.py fit features.pt --variants codes

Each variant prints one JSON line: test image and pixel AUROC, per defect type, the share of good images whose
maximum lies in the outer 16-pixel band, with the map as it is and scaled per location by the held-out normals'
mean map (`location scale`). The held-out tenth of the training images is never trained on.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from training.backbone import FrozenBackbone
from training.fitting import FitPlan, FitStep, fit_loop
from training.models.feature_cae.memory import greedy_coreset, squared_distance_to_nearest

STRIDES = (4, 8, 16)
VARIANTS = {
    "knn": "nearest normal patch in a random tenth of the training patches (the patch-memory reference)",
    "plain": "feature-cae's shape: 1 x 1 in, stride-2 3 x 3 code (64), upsample, 3 x 3, 1 x 1 out",
    "mask": "plain, trained to rebuild 4 x 4-cell blocks of the input set to the mean (30 % of them)",
    "noise": "plain, trained on inputs with Gaussian noise (std 0.7 in standardised units)",
    "memory": "plain with a memory of 1000 normal codes at the bottleneck (MemAE: sparse attention, entropy loss)",
    "coarse": "plain with a stride-4 code (two stride-2 3 x 3 convolutions, two upsamplings)",
    "narrow": "plain with 16 code channels instead of 64",
    "codes": "plain, scored by its code's distance to the nearest training code (code averaged onto the stride-32 "
    "grid; every code, then 16,384 kept farthest-first) and by that plus the reconstruction distance (feature-cae's "
    "memory of normal codes)",
}


def load(path: Path, size: int, mask: bool = False) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if mask else cv2.IMREAD_COLOR)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if mask else cv2.INTER_AREA)
    return (image > 127).astype(np.uint8) if mask else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@torch.no_grad()
def cache(data: Path, size: int, out: Path) -> None:
    backbone = FrozenBackbone("efficientnet-lite0", STRIDES, size, 3).eval()
    suffixes = {".png", ".jpg", ".bmp"}
    train = sorted(p for p in (data / "train/good").iterdir() if p.suffix.lower() in suffixes)
    tests = []
    for folder in sorted((data / "test").iterdir()):
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in suffixes:
                mask = data / "ground_truth" / folder.name / (p.stem + "_mask.png")
                tests.append((p, folder.name, mask if mask.exists() else None))

    def embed(paths: list[Path]) -> list[torch.Tensor]:
        parts = []
        for start in range(0, len(paths), 16):
            batch = np.stack([load(p, size) for p in paths[start : start + 16]])
            parts.append([f.half() for f in backbone(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255)])
        return [torch.cat(scale) for scale in zip(*parts, strict=True)]

    masks = np.stack([load(m, size, True) if m else np.zeros((size, size), np.uint8) for _, _, m in tests])
    torch.save(
        {
            "train": embed(train),
            "test": embed([p for p, _, _ in tests]),
            "types": [t for _, t, _ in tests],
            "masks": torch.from_numpy(masks),
        },
        out,
    )


def merge(features: list[torch.Tensor], taps: list[int], resolution: str) -> torch.Tensor:
    """feature-cae's merge: scales to one grid (the finest tap's, or stride 8's), concatenated, 3 x 3 average."""
    chosen = [features[STRIDES.index(t)].float() for t in taps]
    side = chosen[0].shape[-1] if resolution == "finest" else features[STRIDES.index(8)].shape[-1]
    resized = []
    for f in chosen:
        if f.shape[-1] > side:
            f = F.adaptive_avg_pool2d(f, side)
        elif f.shape[-1] < side:
            f = F.interpolate(f, size=(side, side), mode="bilinear", align_corners=False)
        resized.append(f)
    return F.avg_pool2d(torch.cat(resized, 1), 3, 1, 1, count_include_pad=True)


def conv(i: int, o: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, k, stride, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class Memory(nn.Module):
    """MemAE's memory (Gong et al. 2019): each code is replaced by a sparse mixture of learned normal codes."""

    def __init__(self, items: int, width: int) -> None:
        super().__init__()
        self.items = nn.Parameter(torch.randn(items, width) / width**0.5)
        self.entropy = torch.zeros(())

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        b, d, h, w = code.shape
        weights = torch.softmax(code.permute(0, 2, 3, 1).reshape(-1, d) @ self.items.t(), dim=1)
        shrink = 1.0 / len(self.items)
        weights = F.relu(weights - shrink) * weights / ((weights - shrink).abs() + 1e-12)
        weights = weights / (weights.sum(1, keepdim=True) + 1e-12)
        self.entropy = (-weights * torch.log(weights + 1e-12)).sum(1).mean()
        return (weights @ self.items).reshape(b, h, w, d).permute(0, 3, 1, 2)


def autoencoder(variant: str, channels: int) -> nn.Sequential:
    hidden, latent = 128, 16 if variant == "narrow" else 64
    if variant == "coarse":
        return nn.Sequential(
            conv(channels, hidden, 1),
            conv(hidden, hidden, 3, 2),
            conv(hidden, latent, 3, 2),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv(latent, hidden),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv(hidden, hidden),
            nn.Conv2d(hidden, channels, 1),
        )
    middle: list[nn.Module] = [Memory(1000, latent)] if variant == "memory" else []
    return nn.Sequential(
        conv(channels, hidden, 1),
        conv(hidden, latent, 3, 2),
        *middle,
        nn.Upsample(scale_factor=2, mode="bilinear"),
        conv(latent, hidden),
        nn.Conv2d(hidden, channels, 1),
    )


def corrupt(variant: str, x: torch.Tensor) -> torch.Tensor:
    if variant == "mask":
        h, w = x.shape[-2:]
        blocks = (torch.rand(x.shape[0], 1, (h + 3) // 4, (w + 3) // 4) < 0.3).float()
        return x * (1 - F.interpolate(blocks, scale_factor=4)[..., :h, :w])
    if variant == "noise":
        return x + 0.7 * torch.randn_like(x)
    return x


def report(name: str, maps: torch.Tensor, types: np.ndarray, masks: np.ndarray, seconds: float) -> None:
    size = masks.shape[-1]
    up = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    up = np.stack([cv2.GaussianBlur(u, (0, 0), 4) for u in up])
    defective = types != "good"
    scores = up.reshape(len(up), -1).max(1)
    good = scores[~defective]
    by_type = {}
    for kind in sorted(set(types) - {"good"}):
        chosen = scores[types == kind]
        by_type[kind] = round(roc_auc_score(np.r_[np.zeros(len(good)), np.ones(len(chosen))], np.r_[good, chosen]), 2)
    band = np.ones((size, size), bool)
    b = 16 * size // 224
    band[b:-b, b:-b] = False
    argmax = up[~defective].reshape((~defective).sum(), -1).argmax(1)
    row = {
        "variant": name,
        "image_auroc": round(roc_auc_score(defective, scores), 3),
        "pixel_auroc": round(roc_auc_score(masks[:, ::2, ::2].ravel(), up[:, ::2, ::2].ravel()), 3),
        "per_type": by_type,
        "good_maxima_in_band": round(float(band.ravel()[argmax].mean()), 2),
        "seconds": round(seconds),
    }
    print(json.dumps(row), flush=True)


@torch.no_grad()
def squared_error(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    h, w = features.shape[-2:]
    return torch.cat([((model(c)[..., :h, :w] - c) ** 2).mean(1) for c in features.split(32)])


class VariantStep(FitStep):
    """One variant on the cached features through training's loop: no validation, torch's cosine annealing per epoch
    (to zero, unlike training's schedule, as the variants were measured)."""

    validates = False

    def __init__(
        self,
        model: nn.Module,
        variant: str,
        train: torch.Tensor,
        fitted: torch.Tensor,
        h: int,
        w: int,
        optimizer: torch.optim.Optimizer,
        epochs: int,
    ) -> None:
        self.model, self.variant, self.train, self.fitted, self.h, self.w = model, variant, train, fitted, h, w
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)

    def begin_epoch(self, epoch: int) -> None:
        if epoch > 1:
            self.schedule.step()
        self.model.train()

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        shuffled = self.fitted[torch.randperm(len(self.fitted))]
        for start in range(0, len(shuffled), 16):
            yield self.train[shuffled[start : start + 16]]

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        loss = F.mse_loss(self.model(corrupt(self.variant, batch))[..., : self.h, : self.w], batch)
        if self.variant == "memory":
            loss = loss + 2e-4 * self.model[2].entropy
        return loss


def fit(args: argparse.Namespace) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    data = torch.load(args.cache)
    taps = [int(t) for t in args.taps.split(",")]
    train, test = merge(data["train"], taps, args.resolution), merge(data["test"], taps, args.resolution)
    mean, std = train.mean((0, 2, 3), keepdim=True), train.std((0, 2, 3), keepdim=True) + 1e-4
    train, test = (train - mean) / std, (test - mean) / std
    n, channels, h, w = train.shape
    types, masks = np.array(data["types"]), data["masks"].numpy()
    generator = torch.Generator().manual_seed(1)
    order = torch.randperm(n, generator=generator)
    held_out, fitted = order[: n // 10], order[n // 10 :]
    label = f"taps {args.taps}, grid {args.resolution}, {masks.shape[-1]} px"
    for variant in args.variants.split(","):
        started = time.monotonic()
        if variant == "knn":
            bank = train[fitted].permute(0, 2, 3, 1).reshape(-1, channels)
            bank = bank[torch.randperm(len(bank), generator=generator)[: len(bank) // 10]]
            queries = test.permute(0, 2, 3, 1).reshape(-1, channels)
            distance = torch.cat([torch.cdist(q, bank).min(1).values for q in queries.split(4096)])
            report(f"knn, {label}", distance.view(-1, h, w), types, masks, time.monotonic() - started)
            continue
        model = autoencoder("plain" if variant == "codes" else variant, channels)
        optimizer = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
        step = VariantStep(model, variant, train, fitted, h, w, optimizer, args.epochs)
        plan = FitPlan(variant, args.epochs, deadline=math.inf, learning_rate=2e-3, schedule="constant")
        fit_loop(step, optimizer, plan)
        model.eval()
        test_error, held_out_error = squared_error(model, test), squared_error(model, train[held_out])
        seconds = time.monotonic() - started
        report(f"{variant}, {label}", test_error, types, masks, seconds)
        scaled = test_error / (held_out_error.mean(0, keepdim=True) + 1e-6)
        report(f"{variant}, {label}, location scale", scaled, types, masks, seconds)
        if variant == "codes":
            code_rows(model, train[fitted], train[held_out], test, scaled, types, masks, label)


@torch.no_grad()
def code_rows(
    model: nn.Sequential,
    fitted: torch.Tensor,
    held_out: torch.Tensor,
    test: torch.Tensor,
    scaled_error: torch.Tensor,
    types: np.ndarray,
    masks: np.ndarray,
    label: str,
) -> None:
    """The memory of normal codes on the fitted plain model: each term divided by its held-out mean per location."""
    h, w = test.shape[-2:]

    def codes(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.avg_pool2d(model[:2](c), 2) for c in x.split(32)])

    flat = codes(fitted).permute(0, 2, 3, 1).reshape(-1, 64)
    for size in (len(flat), 16384):
        started = time.monotonic()
        memory = flat[greedy_coreset(flat, size)]

        def distance(x: torch.Tensor, memory: torch.Tensor = memory) -> torch.Tensor:
            c = codes(x)
            nearest = squared_distance_to_nearest(c.permute(0, 2, 3, 1).reshape(-1, 64), memory)
            return F.interpolate(nearest.view(len(c), 1, *c.shape[-2:]), size=(h, w), mode="bilinear")[:, 0]

        code_map = distance(test) / (distance(held_out).mean(0, keepdim=True) + 1e-6)
        seconds = time.monotonic() - started
        report(f"codes, {label}, memory of {len(memory)}", code_map, types, masks, seconds)
        report(
            f"codes, {label}, memory of {len(memory)} + reconstruction", code_map + scaled_error, types, masks, seconds
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cache_cmd = commands.add_parser("cache", help="backbone features of train/good and test/ at one size")
    cache_cmd.add_argument("data", type=Path)
    cache_cmd.add_argument("--size", type=int, default=224)
    cache_cmd.add_argument("--out", type=Path, required=True)
    fit_cmd = commands.add_parser("fit", help="fit and score the variants on a cache")
    fit_cmd.add_argument("cache", type=Path)
    fit_cmd.add_argument("--taps", default="8,16", help="strides merged, from 4, 8, 16")
    fit_cmd.add_argument("--resolution", choices=("finest", "8"), default="finest", help="grid the taps meet on")
    fit_cmd.add_argument("--variants", default="knn,plain", help=", ".join(VARIANTS))
    fit_cmd.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    if args.command == "cache":
        cache(args.data, args.size, args.out)
    else:
        fit(args)


if __name__ == "__main__":
    main()
