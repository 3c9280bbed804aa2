"""Realized flops and activation ratios of graph-level dWr scaling over torchvision's zoo (not a test: a report).

    python tests/nas/scaling/zoo_ratios.py [--no-match-flops] [MODEL ...]

Prints, per model and factor s in 2, 4, 8: flops ratio, acts ratio and its exponent log(acts) / log(s), the
depths before -> after, and the notes. Models are built on the meta device where the builder allows it.
"""

from __future__ import annotations

import argparse
import math

import torch
import torchvision

from nas.scaling import scale_model

ZOO = [
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "convnext_tiny",
    "densenet121",
    "shufflenet_v2_x1_0",
    "regnet_y_400mf",
    "regnet_x_400mf",
    "mnasnet0_5",
    "vgg11_bn",
    "squeezenet1_1",
    "googlenet",
    "inception_v3",
    "alexnet",
]
KWARGS = {
    "googlenet": dict(aux_logits=False, init_weights=False),
    "inception_v3": dict(aux_logits=False, init_weights=False),
}
SIZE = {"inception_v3": 299}


def build(name: str) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return getattr(torchvision.models, name)(**KWARGS.get(name, {}))
    except NotImplementedError:
        return getattr(torchvision.models, name)(**KWARGS.get(name, {}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=ZOO)
    parser.add_argument("--no-match-flops", action="store_true")
    args = parser.parse_args()
    print(f"{'model':20s} {'s':>2s} {'flops':>7s} {'acts':>6s} {'acts exp':>8s}  depths")
    for name in args.models:
        model, size = build(name), SIZE.get(name, 224)
        for factor in (2, 4, 8):
            scaled = scale_model(model, factor, "dWr", (3, size, size), match_flops=not args.no_match_flops)
            ratios = scaled.costs()["ratios"]
            exponent = math.log(ratios["acts"]) / math.log(factor)
            print(
                f"{name:20s} {factor:2d} {ratios['flops']:7.3f} {ratios['acts']:6.3f} {exponent:8.2f}  "
                f"{list(scaled.before.depths)} -> {list(scaled.after.depths)}"
            )
            for note in scaled.notes:
                print(f"{'':24s}{note}")


if __name__ == "__main__":
    main()
