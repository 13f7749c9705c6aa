"""The stacked autoencoder's family: greedy layer-wise pretraining (pretraining.py) on `pretrain_fraction` of the
budget, then end-to-end fine-tuning by the shared denoising step (training.models.from_scratch) on the rest; its
latent code is the top of the encoder stack."""

from __future__ import annotations

import torch

from training.models.family import ImageData, ImageRun
from training.models.from_scratch import Budget, FromScratchFamily
from training.models.stacked.model import StackedAE
from training.models.stacked.pretraining import PretrainPlan, pretrain_layers


class StackedFamily(FromScratchFamily[StackedAE]):
    """`stacked-ae`."""

    def pretrain(
        self, model: StackedAE, run: ImageRun, data: ImageData, device: torch.device
    ) -> tuple[Budget, list[dict[str, object]]]:
        """Greedy pretraining of the layer pairs on `pretrain_fraction` of the epochs and minutes; the end-to-end fit
        gets the rest. A fraction of 0 trains end to end only."""
        share = run.pretrain_fraction
        if share == 0:
            return Budget(run.epochs, run.max_minutes), []
        plan = PretrainPlan(
            epochs_per_layer=max(1, round(run.epochs * share / len(model.encoders))),
            minutes=run.max_minutes * share,
            batch_size=run.batch_size,
            learning_rate=run.learning_rate,
            corruption=run.corruption,
            noise_level=run.noise_level,
            corruption_probability=run.defect_probability,
            seed=run.seed,
            show_progress=run.show_progress,
        )
        losses = pretrain_layers(model, data.train_images, plan, device)
        rest = Budget(epochs=max(1, round(run.epochs * (1 - share))), minutes=run.max_minutes * (1 - share))
        return rest, [{"pretraining": "greedy layer-wise", "layer_losses": [round(v, 6) for v in losses]}]

    def latent_code(self, model: StackedAE, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return model.encode_to(image, len(model.encoders))


STACKED = StackedFamily()
