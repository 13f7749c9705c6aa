"""`lineguard cluster` and `lineguard generate`: the models' latent space, run with onnxruntime (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from
from pipeline.errors import LineGuardError


def cluster_command(
    model: Annotated[Path, typer.Option(help="encoder ONNX (or a scoring model with <model>.encoder.onnx beside it)")],
    db: DbOpt = None,
    method: Annotated[str, typer.Option(help="kmeans or dbscan")] = "kmeans",
    k: Annotated[int, typer.Option("--k", help="clusters (kmeans)")] = 8,
    eps: Annotated[
        float | None,
        typer.Option(help="neighbourhood radius (dbscan; default: the radius that makes 9 in 10 defects core points)"),
    ] = None,
    min_samples: Annotated[int, typer.Option(help="points in a dense neighbourhood (dbscan)")] = 5,
    out: Annotated[Path, typer.Option(help="folder for cluster_<id>.png contact sheets and clusters.json")] = Path(
        "clusters"
    ),
    camera: Annotated[str | None, typer.Option(help="only this camera's defects")] = None,
    since: Annotated[str | None, typer.Option(help="only defects captured since: 30m, 2h, 7d or an ISO time")] = None,
    status: Annotated[str | None, typer.Option(help="only this review status: new, confirmed, rejected")] = None,
    limit: Annotated[int, typer.Option(help="newest defects at most")] = 5000,
    config: ConfigOpt = None,
) -> None:
    """Embed stored defect crops with the model's encoder, cluster them, write each defect's cluster id."""
    from pipeline.latent.defect_clusters import ClusterConfig, cluster_defects
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import DefectFilter, parse_since

    if limit < 2:
        raise LineGuardError(f"--limit must be >= 2, got {limit}")
    where = DefectFilter(camera=camera, since=parse_since(since) if since else None, status=status)
    where.conditions()  # a bad --status fails before the encoder loads
    cfg = ClusterConfig(model, out, method, k, eps, min_samples, where, limit)
    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    report = cluster_defects(sessions, None, cfg)
    shown = "n/a (fewer than two clusters)" if report.silhouette is None else f"{report.silhouette:.3f}"
    sizes = ", ".join(f"{'noise' if c == -1 else c}: {n}" for c, n in sorted(report.sizes.items()))
    typer.echo(
        f"{report.embedded} defects in {len([c for c in report.sizes if c != -1])} clusters ({sizes}); "
        f"silhouette {shown}; {report.skipped} without a usable frame"
    )
    typer.echo(f"contact sheets: {out}; list one: lineguard defects list --cluster N")


def generate_command(
    model: Annotated[Path, typer.Argument(help="a vae/cvae scoring model (decoder beside it) or its .decoder.onnx")],
    out: Annotated[Path, typer.Option(help="folder for the PNGs")],
    count: Annotated[int, typer.Option(help="images sampled from the prior N(0, I)")] = 16,
    condition: Annotated[str | None, typer.Option(help="camera or variant of a cvae (default: unconditional)")] = None,
    interpolate: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="two images: write the strip between their latent codes instead of samples"),
    ] = None,
    steps: Annotated[int, typer.Option(help="images in the interpolation strip, both ends included")] = 8,
    encoder: Annotated[
        Path | None, typer.Option(help="encoder ONNX for --interpolate (default: <model>.encoder.onnx)")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Sample new images from a variational model's decoder, or interpolate between two images."""
    from pipeline.latent.generate import sample, write_interpolation
    from pipeline.latent.runtime import Decoder, Encoder

    if count < 1 or steps < 2:
        raise LineGuardError(f"--count must be >= 1 and --steps >= 2, got {count} and {steps}")
    decoder = Decoder(model)
    if interpolate is None:
        written = sample(decoder, count, out, condition, seed)
        typer.echo(json.dumps({"out": str(out), "written": len(written)}))
        return
    encoder_model = Encoder(encoder or model)
    path = write_interpolation(encoder_model, decoder, interpolate[0], interpolate[1], steps, out, condition)
    typer.echo(json.dumps({"out": str(out), "written": 1, "strip": str(path)}))


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster_command)
    app.command("generate")(generate_command)
