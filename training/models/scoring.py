"""What the line runs, as torch: a model's outputs plus the image score (the max of the locally averaged map).

The exported scoring file is this graph (training.export.contract.export_onnx); training scores through it too where
it must judge a model as the line will (the feature-space candidates on the validation defects).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ScoringGraph(nn.Module):
    """What the line runs: model outputs plus the image score (max of the locally averaged map).

    Averaging before the max makes the score follow defect area and intensity, not one noisy pixel.
    """

    def __init__(self, model: nn.Module, score_pool: int) -> None:
        super().__init__()
        self.model = model
        self.score_pool = score_pool

    def forward(
        self, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output = self.model(image) if condition is None else self.model(image, condition)
        return output.reconstruction, output.anomaly_map, self.image_score(output.anomaly_map)

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """One score per frame from its anomaly map (N x 1 x H x W)."""
        k = self.score_pool
        pad = k // 2
        # the box average done as rows then columns: the same numbers (the divisor without padding is the product of
        # the two counts) at 2k instead of k^2 additions per pixel; the 2-D pool was a quarter of the graph's time
        rows = F.avg_pool2d(anomaly_map, (1, k), stride=1, padding=(0, pad), count_include_pad=False)
        pooled = F.avg_pool2d(rows, (k, 1), stride=1, padding=(pad, 0), count_include_pad=False)
        return pooled.flatten(1).amax(dim=1)


@torch.no_grad()
def predict(
    graph: ScoringGraph, images: np.ndarray, batch: int = 32, map_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps (N x 1 x H x W) and image scores (N) from the torch scoring graph; `map_only` skips what the map
    and score do not need (a feature-space model's image restorer, through its `anomaly_map`)."""
    graph.eval()
    maps, scores = [], []
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(images[start : start + batch])
        if map_only:
            anomaly_map = graph.model.anomaly_map(chunk)
            score = graph.image_score(anomaly_map)
        else:
            _, anomaly_map, score = graph(chunk)
        maps.append(anomaly_map.numpy())
        scores.append(score.numpy())
    return np.concatenate(maps), np.concatenate(scores)
