"""Every registered model: forward, backward, ONNX export and torch/onnxruntime parity on tiny inputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, OUTPUT_NAMES, ConditionSpec, ModelMetadata, ScoreStats
from pipeline.inference import OnnxModel, scoring_subgraph
from training.errors import ConfigError, UnknownModelError
from training.export.contract import ScoringGraph, export_onnx
from training.export.decoder import export_decoder
from training.export.quantize import scoring_tail
from training.models import MODELS, create_model, model_entry
from training.models.blocks import ModelOutput
from training.models.feature_cae.memory import greedy_coreset, leave_one_image_out, squared_distance_to_nearest
from training.models.feature_space.model import smoothing_matrix, upsample_to
from training.models.losses import LossWeights, total_loss
from training.ssim import gaussian_blur, gaussian_kernel

SIZE = 32


def tiny_metadata(name: str, channels: int) -> ModelMetadata:
    stats = ScoreStats(n=2, mean=0.1, std=0.01, quantiles={"0.99": 0.12})
    return ModelMetadata(
        model_name="tiny",
        model_version="1",
        architecture=name,
        kind="image",
        input_size=SIZE,
        input_channels=channels,
        resize_mode="stretch",
        image_threshold=0.5,
        pixel_threshold=0.5,
        image_score_stats=stats,
        pixel_score_stats=stats,
        train_data_digest="0" * 64,
        created_at="2026-11-28T00:00:00+00:00",
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_export_parity(name: str, channels: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, channels, widths=(8, 8, 16, 16), latent_channels=8, head_width=4, image_size=SIZE)
    clean = torch.rand(2, channels, SIZE, SIZE)
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[0, 0, 4:10, 4:10] = 1

    output = model(clean)
    assert output.reconstruction.shape == clean.shape
    assert output.anomaly_map.shape == (2, 1, SIZE, SIZE)
    loss, terms = total_loss(output, clean, mask, LossWeights())
    loss.backward()
    assert all(np.isfinite(v) for v in terms.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    out = tmp_path / f"{name}.onnx"
    metadata = tiny_metadata(name, channels)
    conditional = model_entry(name).conditional
    if conditional:  # the default vocabulary size of 2: "unknown" plus one value
        metadata = replace(metadata, condition=ConditionSpec("camera-id", ("cam-a",)))
    parity = export_onnx(ScoringGraph(model, score_pool=3), metadata, out)
    assert parity < 1e-3

    proto = onnx.load(str(out))
    inputs = [INPUT_NAME, CONDITION_INPUT_NAME] if conditional else [INPUT_NAME]
    assert [i.name for i in proto.graph.input] == inputs
    assert tuple(o.name for o in proto.graph.output) == OUTPUT_NAMES
    loaded = OnnxModel(out)
    assert loaded.metadata.architecture == name
    scores = loaded.score(np.random.default_rng(0).random((5, channels, SIZE, SIZE), dtype=np.float32))
    assert scores.score.shape == (5,)  # dynamic batch axis: 5 was never seen at export
    assert scores.anomaly_map.shape == (5, 1, SIZE, SIZE)
    if model_entry(name).family.has_decoder:  # variational models: the decoder-only file for sampling
        assert export_decoder(model, metadata, tmp_path / f"{name}.decoder.onnx") < 1e-3


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(
        UnknownModelError, match="valid names: cae, cae-plain, cvae, feature-cae, reverse-distillation, stacked-ae, vae"
    ):
        create_model("resnet", 3)


def test_bad_model_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="dropout"):
        create_model("cae", 3, dropout=1.5)


def test_unknown_override_key_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"'latent_chanels'.*valid keys: dropout, .*latent_channels, .*widths"):
        create_model("cae", 3, latent_chanels=8)


def test_override_of_another_model_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    model = create_model("vae", 1, widths=(8, 8, 16, 16), head_width=4, dropout=None)
    assert model.config.widths == (8, 8, 16, 16)
    assert "model 'vae' takes no head_width: ignored" in caplog.text


def test_separable_blur_and_score_pool_equal_their_2d_forms() -> None:
    """The scoring graph blurs and box-averages along rows then columns; the numbers must be the 2-D ones."""
    torch.manual_seed(0)
    maps = torch.rand(3, 1, 40, 56) ** 4  # peaked, like an anomaly map
    kernel = gaussian_kernel(4.0, 1)
    weights = kernel[0, 0, 0]
    pad = len(weights) // 2
    full = (weights[:, None] * weights[None, :])[None, None]
    expected = F.conv2d(F.pad(maps, (pad, pad, pad, pad), mode="reflect"), full)
    assert torch.allclose(gaussian_blur(maps, kernel), expected, atol=1e-6)

    class MapIsInput(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> ModelOutput:
            return ModelOutput(image, image)

    _, _, score = ScoringGraph(MapIsInput(), score_pool=19)(maps)
    box = F.avg_pool2d(maps, 19, stride=1, padding=9, count_include_pad=False)
    assert torch.allclose(score, box.flatten(1).amax(dim=1), atol=1e-6)


def test_the_feature_models_map_is_the_upsampled_blurred_distance_as_two_products(tmp_path: Path) -> None:
    """The feature-space map is bilinear upsampling then the reflect-padded Gaussian, computed as S @ d @ S.T; the
    numbers must be those of the two operations, at the model's size and another, and the graph holds no Resize."""
    torch.manual_seed(0)
    distance = torch.rand(3, 1, 8, 8) ** 4
    kernel = gaussian_kernel(4.0, 1)
    for size in (64, 96):
        matrix = smoothing_matrix(8, size, kernel)
        expected = gaussian_blur(upsample_to(distance, size), kernel)
        assert torch.allclose(matrix @ distance @ matrix.t(), expected, atol=1e-6)
    model = create_model("feature-cae", 1, image_size=64, code_memory=0).eval()  # the memory's 2 x 2 grid is resized
    assert model.smoothing.shape == (64, 8) and "smoothing" not in model.state_dict()  # rebuilt, never stored
    assert torch.allclose(model.smooth_to(distance, 96), gaussian_blur(upsample_to(distance, 96), kernel), atol=1e-6)
    metadata = replace(tiny_metadata("feature-cae", 1), input_size=64)
    assert export_onnx(ScoringGraph(model, score_pool=5), metadata, tmp_path / "m.onnx") < 1e-3
    proto = onnx.load(str(tmp_path / "m.onnx"))
    tail = set(scoring_tail(proto))
    tail_ops = {n.op_type for n in proto.graph.node if n.name in tail}
    assert "MatMul" in tail_ops and not tail_ops & {"Resize", "Conv", "Pad"}


def test_the_line_scores_without_running_the_restorer_and_restores_on_demand(tmp_path: Path) -> None:
    """onnxruntime runs every node of a graph whatever is fetched: the scoring session holds the map and score's
    nodes only, and gives the whole graph's numbers; restore() opens the whole graph for the kept frames."""
    torch.manual_seed(0)
    model = create_model("feature-cae", 3, image_size=SIZE).eval()
    out = tmp_path / "feature-cae.onnx"
    export_onnx(ScoringGraph(model, score_pool=3), tiny_metadata("feature-cae", 3), out)
    proto = onnx.load(str(out))
    scoring = onnx.load_from_string(scoring_subgraph(proto))
    assert [o.name for o in scoring.graph.output] == ["anomaly_map", "score"]
    assert any("restorer" in n.name for n in proto.graph.node)
    assert not any("restorer" in n.name for n in scoring.graph.node)
    assert len(scoring.graph.node) < len(proto.graph.node)

    loaded = OnnxModel(out, prefer_gpu=False)
    batch = np.random.default_rng(0).random((3, 3, SIZE, SIZE), dtype=np.float32)
    scored = loaded.score(batch)
    with torch.no_grad():
        restored, anomaly_map, score = ScoringGraph(model, score_pool=3)(torch.from_numpy(batch))
    np.testing.assert_allclose(scored.score, score.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(scored.anomaly_map, anomaly_map.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(loaded.restore(batch), restored.numpy(), atol=1e-4)


def test_feature_cae_with_a_stride_4_code_rebuilds_the_full_map_and_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("feature-cae", 1, image_size=64, bottleneck_stride=4).eval()
    features = model.extract(torch.rand(2, 1, 64, 64))
    distance, rebuilt = model.reconstruct(features)
    assert distance.shape == (2, 1, 8, 8) and rebuilt.shape[-2:] == (8, 8)
    assert len(model.encoder) == 3  # 1 x 1 in, two stride-2 3 x 3 convolutions
    metadata = replace(tiny_metadata("feature-cae", 1), input_size=64)
    assert export_onnx(ScoringGraph(model, score_pool=5), metadata, tmp_path / "coarse.onnx") < 1e-3
    with pytest.raises(ValueError, match="bottleneck_stride"):
        create_model("feature-cae", 1, bottleneck_stride=3)


def test_feature_cae_memory_finds_a_code_no_normal_image_has_and_exports(tmp_path: Path) -> None:
    """The memory term: 0 where a frame's codes are in the memory, large where a code is far from every kept one; the
    term's scale comes from each training image against the others (its own codes would score it 0), and the graph
    with the memory matches torch in onnxruntime."""
    torch.manual_seed(0)
    model = create_model("feature-cae", 1, image_size=64, code_memory=16).eval()
    normals = torch.rand(6, 1, 64, 64) * 0.2 + 0.4
    features = model.extract(normals)
    model.fit_scoring(features)
    assert model.memory.shape == (16, 64)  # 6 images x 2 x 2 codes (the stride-2 code pooled), 16 kept farthest-first
    assert model.scoring_options() == (
        "reconstruction",
        "reconstruction + code memory",
        "reconstruction + 2 x code memory",
        "reconstruction + 4 x code memory",
    )
    assert torch.isfinite(model.memory_scale).all() and (model.memory_scale > 0).all()

    with torch.no_grad():
        _, _, codes = model.reconstruct_with_code(features)
        near, far = model.memory_distance(codes), model.memory_distance(codes + 10.0)
    assert float(near.amin()) == pytest.approx(0.0, abs=1e-4)  # kept codes are at distance 0
    assert float(far.amin()) > 100 * float(near.mean())

    with torch.no_grad():
        model.use_scoring("reconstruction + code memory")
        with_memory = model.anomaly_map(normals)
        model.use_scoring("reconstruction")
        alone = model.anomaly_map(normals)
    assert not torch.allclose(with_memory, alone)
    with pytest.raises(ValueError, match="unknown scoring"):
        model.use_scoring("nearest patch")

    model.use_scoring("reconstruction + code memory")
    metadata = replace(tiny_metadata("feature-cae", 1), input_size=64)
    assert export_onnx(ScoringGraph(model, score_pool=5), metadata, tmp_path / "memory.onnx") < 1e-3


def test_feature_cae_memory_weight_is_kept_in_the_checkpoint() -> None:
    """A weighted memory term, once chosen, lives in the term's scale: the checkpoint rebuilds the same map."""
    torch.manual_seed(0)
    model = create_model("feature-cae", 1, image_size=64, code_memory=16).eval()
    normals = torch.rand(6, 1, 64, 64) * 0.2 + 0.4
    model.fit_scoring(model.extract(normals))
    frame = normals[:2] + torch.rand(2, 1, 64, 64) * 0.3
    with torch.no_grad():
        model.use_scoring("reconstruction")
        reconstruction = model.anomaly_map(frame)
        model.use_scoring("reconstruction + code memory")
        once = model.anomaly_map(frame)
        model.use_scoring("reconstruction + 2 x code memory")
        twice = model.anomaly_map(frame)
    torch.testing.assert_close(twice - reconstruction, 2 * (once - reconstruction), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        maps = model.maps_by_scoring(model.extract(frame), 64)  # every option from one pass, for the selection
    assert list(maps) == list(model.scoring_options())
    torch.testing.assert_close(maps["reconstruction"], reconstruction)
    torch.testing.assert_close(maps["reconstruction + 2 x code memory"], twice, rtol=1e-4, atol=1e-6)
    model.use_scoring("reconstruction + 2 x code memory")
    model.discard_unused_scoring()
    rebuilt = create_model("feature-cae", 1, image_size=64, code_memory=16).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.anomaly_map(frame), twice)


def test_feature_cae_without_its_memory_in_the_map_carries_none() -> None:
    model = create_model("feature-cae", 1, image_size=64, bottleneck_stride=4, code_memory=8).eval()
    model.fit_scoring(model.extract(torch.rand(3, 1, 64, 64)))
    model.use_scoring("reconstruction")
    model.discard_unused_scoring()
    assert model.memory.shape == (0, 64)
    assert model.shape_fields() == {"bottleneck_stride": 4, "code_memory": 0}
    assert model.scoring_options() == ("reconstruction",)
    with pytest.raises(ValueError, match="code_memory"):
        create_model("feature-cae", 1, code_memory=-1)


def test_greedy_coreset_keeps_every_cluster_and_leave_one_out_ignores_the_image_itself() -> None:
    clusters = torch.cat([torch.randn(50, 4) * 0.01 + centre for centre in (0.0, 5.0, -5.0)])
    kept = greedy_coreset(clusters, 3)
    assert sorted(round(float(clusters[i].mean())) for i in kept) == [-5, 0, 5]
    assert len(greedy_coreset(clusters, 500)) == len(clusters)

    codes = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    owners = torch.tensor([0, 1])
    assert leave_one_image_out(codes, owners, codes, owners).tolist() == pytest.approx([25.0, 25.0])
    assert squared_distance_to_nearest(codes, codes).tolist() == pytest.approx([0.0, 0.0], abs=1e-5)


def test_feature_cae_rebuilds_from_its_selection_record_and_older_models_with_their_old_shape() -> None:
    """The chosen selection row's model_fields rebuild the checkpoint's shape; a model trained before they were
    recorded had a stride-2 code and no memory."""
    family = model_entry("feature-cae").family
    old_row = {"model": "feature-cae", "contrast_normalize": True, "chosen": True}
    old = replace(tiny_metadata("feature-cae", 3), training_config={"selection": [old_row]})
    assert family.rebuild_overrides(old) == {"contrast_normalize": True, "bottleneck_stride": 2, "code_memory": 0}
    fields = {"bottleneck_stride": 2, "code_memory": 9261}
    scoring = "reconstruction + code memory"
    new_row = {**old_row, "contrast_normalize": False, "scoring": scoring, "model_fields": fields}
    new = replace(tiny_metadata("feature-cae", 3), training_config={"selection": [new_row]})
    assert family.rebuild_overrides(new) == {"contrast_normalize": False, **fields}
    model = create_model("feature-cae", 3, image_size=64, **fields)
    assert model.memory.shape == (9261, 64) and model.memory_in_map
