"""``sparseshift export-encoder --encoder package.module:factory --out DIR``: your own encoder as
a portable folder (``encoder.json``: its spec, factory and weights digest; ``weights.safetensors``).

Loading the folder later (``train-agent --encoder DIR``, ``evaluate``, ``eval-rep``,
``scorecard``) imports the factory only when you allow its module (``--plugin MODULE``) or it is
an installed ``sparseshift.encoders`` entry point: the folder is data, never code.
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "export-encoder"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.commands.options import add_plugin_flag

    p = sub.add_parser(
        NAME,
        help="export your own torch encoder (package.module:factory + weights) as a folder",
        description=(
            "Build the encoder that --encoder names (package.module:factory, a callable "
            "returning a torch.nn.Module, or an installed sparseshift.encoders entry point), "
            "load --encoder-weights (safetensors) into it, check its spec (image size, input "
            "layout and value range, latent size: the module's encoder_spec attribute or the "
            "defaults, float [B, 3, H, W] in [0, 1]) with one forward pass, and write --out: "
            "encoder.json and weights.safetensors. The folder's fingerprint covers the spec, "
            "the factory and the weights."
        ),
    )
    p.add_argument("--encoder", required=True, metavar="MODULE:FACTORY",
                   help="package.module:factory or an installed encoder entry point")
    p.add_argument("--encoder-weights", default=None, metavar="W.safetensors",
                   help="weights to load into the module (default: the factory's own)")
    p.add_argument("--image-size", type=int, default=64,
                   help="image size when the module declares none (default 64)")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    add_plugin_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparseshift.envs.infra.errors import check_image_size
    from sparseshift.experiments.commands.options import plugins_of
    from sparseshift.experiments.commands.written import print_written
    from sparseshift.representations.external import (
        build_from_factory,
        encoder_fingerprint,
        export_encoder,
    )

    check_image_size(args.image_size)
    plugins = plugins_of(args).with_spec(args.encoder)
    encoder = build_from_factory(args.encoder, plugins, args.image_size, args.encoder_weights)
    path = export_encoder(encoder, Path(args.out))
    spec = encoder.spec
    print(f"exported {spec.factory} ({spec.layout}, {spec.value_range}, {spec.image_size}x"
          f"{spec.image_size} -> {spec.latent_dim} latents) to {path}, fingerprint "
          f"{encoder_fingerprint(encoder)[:16]}; load it with --encoder {path} --plugin "
          f"{spec.factory.partition(':')[0]}")
    print_written(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
    return 0
