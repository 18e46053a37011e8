"""Start an IMC-SR model from another one's weights: fine-tuning, a deeper model, or a model
of other structures (features kept, shared output filters kept, new ones fresh)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from inference.model_file import read_model_file, resolve_model_path
from inference.models.imcsr import Imcsr, ImcsrOptions

logger = logging.getLogger(__name__)


def load_start(module: Imcsr, init_from: str | Path) -> str:
    """Start from another model file's weights: the same architecture options, or the same
    but fewer residual groups (the model is deepened by function-preserving new groups), or
    other output structures (the features carry over; see `_renamed_outputs`), or the other
    `output` kind (intensity <-> shares: the features carry over, the output conv starts
    fresh). Returns the init's description for the model's provenance."""
    info, state = read_model_file(resolve_model_path(init_from))
    wanted = module.options.model_dump(mode="json")
    have = ImcsrOptions.model_validate(info.options) if info.architecture == "imcsr" else None
    extra = wanted["groups"] - (have.groups if have is not None else 0)
    outputs = {k: wanted[k] for k in (
        "groups", "channel_names", "output_channels", "output", "widefield_input")}
    if have is None or {**have.model_dump(mode="json"), **outputs} != wanted or extra < 0:
        raise ValueError(
            f"init_from={init_from}: {info.architecture} {info.options} does not match the "
            f"configured imcsr {wanted}"
        )
    if module.options.widefield_input and not have.widefield_input:
        state = _with_widefield_input(module, state)
    elif have.widefield_input and not module.options.widefield_input:
        raise ValueError(f"init_from={init_from} takes the wide-field image; the configured "
                         "imcsr does not (widefield_input=false)")
    if have.output != module.options.output:
        fresh = module.state_dict()
        state = {**state, "output.weight": fresh["output.weight"].clone(),
                 "output.bias": fresh["output.bias"].clone()}
        logger.info("output %s (was %s): the output conv starts fresh",
                    module.options.output, have.output)
    elif have.channel_names != module.options.channel_names:
        state = _renamed_outputs(module, state, have.channel_names)
    if extra:
        state = _deepened(module, state, extra)
    module.load_state_dict(state, strict=True)
    logger.info(
        "starting from %s (sha256 %s)%s", init_from, info.weights_sha256,
        f", {extra} residual groups added" if extra else "",
    )
    return f"{init_from} (sha256 {info.weights_sha256[:12]})"


def _with_widefield_input(module: Imcsr, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with the head conv taking the wide-field input too: its new input filters start
    at zero, so the model computes what the SR-only one did until training uses them."""
    head = module.state_dict()["head.weight"].clone().zero_()
    old = state["head.weight"]
    head[:, : old.shape[1]] = old  # pixel-unshuffle order: the SR cells first
    logger.info("head conv: wide-field input filters added (zero)")
    return {**state, "head.weight": head}


def _renamed_outputs(
    module: Imcsr, state: dict[str, torch.Tensor], old_names: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """`state` with the output conv re-mapped to the module's channel names: a structure the
    old model also produced keeps its output filter; a new structure gets the fresh
    initialisation (its channel is learnt anew on the transferred features)."""
    fresh = module.state_dict()
    weight, bias = fresh["output.weight"].clone(), fresh["output.bias"].clone()
    cells = module.options.downscale ** 2  # output rows per structure (pixel shuffle order)
    kept = []
    for index, name in enumerate(module.options.channel_names):
        if name in old_names:
            new_rows = slice(index * cells, (index + 1) * cells)
            old_rows = slice(old_names.index(name) * cells, (old_names.index(name) + 1) * cells)
            weight[new_rows] = state["output.weight"][old_rows]
            bias[new_rows] = state["output.bias"][old_rows]
            kept.append(name)
    logger.info(
        "output channels %s (was %s): kept %s, new %s", module.options.channel_names,
        old_names, kept, [n for n in module.options.channel_names if n not in kept],
    )
    return {**state, "output.weight": weight, "output.bias": bias}


def _deepened(
    module: Imcsr, state: dict[str, torch.Tensor], extra: int
) -> dict[str, torch.Tensor]:
    """`state` of a shallower model extended by `extra` residual groups that start as x -> 2x
    (each RCAB's last conv zeroed, so every block is the identity); the tail conv's weights are
    divided by 2**extra, so the deeper model computes exactly what the shallower one did."""
    grown = {k: v.clone() for k, v in module.state_dict().items()}
    first_new = module.options.groups - extra
    for key, value in state.items():
        grown[key] = value.clone()
    for key in grown:
        parts = key.split(".")
        if parts[0] == "groups" and int(parts[1]) >= first_new and parts[4] == "conv2":
            grown[key] = torch.zeros_like(grown[key])
    grown["tail.weight"] = state["tail.weight"] / 2.0**extra
    return grown
