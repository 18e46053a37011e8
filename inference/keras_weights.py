"""Convert the DFCAN authors' Keras HDF5 weights to our PyTorch DFCAN / DFGAN generator.

Layers that have weights are taken in the file's `layer_names` order (= creation order) and
mapped by position onto the network's Conv2d layers; kernels (kh, kw, in, out) become
(out, in, kh, kw); the pre-shuffle conv's output channels are reordered so that PyTorch's
PixelShuffle reproduces TF's depth_to_space (PyTorch channel c*s^2+q takes TF channel q*C+c).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from inference.models import Dfcan, DfcanOptions, build_model, validate_options

log = logging.getLogger(__name__)

MODE_BY_CHANNELS = {1: "sisr", 9: "sim", 25: "nlsim"}


class WeightConversionError(ValueError):
    """The Keras file does not fit the chosen architecture (message names layer and shapes)."""


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer that has weights: its name and arrays in `weight_names` order."""

    name: str
    weights: tuple[np.ndarray, ...]


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_layers(path: str | Path) -> list[KerasLayer]:
    """The layers with weights of a Keras HDF5 weights file, in `layer_names` order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightConversionError(f"{path}: not an HDF5 file ({exc})") from exc
    with handle:
        root = handle.get("model_weights", handle)
        if "layer_names" not in root.attrs:
            raise WeightConversionError(
                f"{path}: no 'layer_names' attribute; not a Keras weights file"
            )
        layers = []
        for raw_name in root.attrs["layer_names"]:
            name = _text(raw_name)
            group = root.get(name)
            if group is None:
                raise WeightConversionError(f"{path}: layer {name!r} is listed but has no group")
            weight_names = [_text(w) for w in group.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            arrays = []
            for weight_name in weight_names:
                if weight_name not in group:
                    raise WeightConversionError(
                        f"{path}: layer {name!r} lists weight {weight_name!r} but it is missing"
                    )
                arrays.append(np.asarray(group[weight_name], dtype=np.float32))
            layers.append(KerasLayer(name, tuple(arrays)))
    return layers


def _conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def depth_to_space_reorder(
    weight: np.ndarray, bias: np.ndarray, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder pre-shuffle conv outputs (PyTorch layout) from TF depth_to_space to PixelShuffle."""
    out_channels = weight.shape[0]
    q_count = scale * scale
    if out_channels % q_count:
        raise WeightConversionError(
            f"pre-shuffle conv has {out_channels} outputs, not a multiple of scale^2={q_count}"
        )
    width = out_channels // q_count
    c, q = np.meshgrid(np.arange(width), np.arange(q_count), indexing="ij")
    source = (q * width + c).reshape(-1)  # new channel c*q_count+q <- old channel q*width+c
    return weight[source], bias[source]


def infer_dfcan_options(layers: list[KerasLayer], arch: str, input_channels: int) -> DfcanOptions:
    """DFCAN options implied by the Keras file for the chosen architecture and input channels."""
    if not layers:
        raise WeightConversionError("the Keras file has no layers with weights")
    head_kernel = layers[0].weights[0]
    if head_kernel.ndim != 4:
        raise WeightConversionError(
            f"layer {layers[0].name!r}: expected a 4-D conv kernel, got shape {head_kernel.shape}"
        )
    width = int(head_kernel.shape[3])
    pre_shuffle = layers[-2].weights[0] if len(layers) >= 2 else head_kernel
    ratio = int(pre_shuffle.shape[-1]) // max(width, 1)
    scale = round(ratio**0.5)
    if scale * scale * width != pre_shuffle.shape[-1]:
        raise WeightConversionError(
            f"layer {layers[-2].name!r}: {pre_shuffle.shape[-1]} outputs is not width {width} x "
            f"scale^2 (kernel shape {pre_shuffle.shape})"
        )
    values = {
        "input_channels": input_channels,
        "width": width,
        "scale": scale,
        "reduction": max(width // max(int(layers[4].weights[0].shape[-1]), 1), 1)
        if len(layers) > 4
        else 16,
    }
    options = validate_options(arch, values)
    assert isinstance(options, DfcanOptions)
    return options


def convert_keras_weights(path: str | Path, arch: str, input_channels: int) -> Dfcan:
    """Load a Keras DFCAN / DFGAN-generator weights file into a new PyTorch network."""
    if arch not in ("dfcan", "dfgan"):
        raise WeightConversionError(f"--arch must be 'dfcan' or 'dfgan', got {arch!r}")
    if input_channels not in MODE_BY_CHANNELS:
        raise WeightConversionError(f"--input-channels must be 1, 9 or 25, got {input_channels}")
    layers = read_keras_layers(path)
    options = infer_dfcan_options(layers, arch, input_channels)
    model = build_model(arch, options)
    assert isinstance(model, Dfcan)
    convs = _conv_layers(model)
    if len(layers) != len(convs):
        o = model.options
        raise WeightConversionError(
            f"{path}: {len(layers)} layers with weights, but {arch} ({o.groups} groups x "
            f"{o.blocks} FCABs) has {len(convs)} conv layers; wrong --arch?"
        )
    pre_shuffle_index = len(convs) - 2
    with torch.no_grad():
        for index, (layer, conv) in enumerate(zip(layers, convs, strict=True)):
            if len(layer.weights) != 2:
                raise WeightConversionError(
                    f"layer {layer.name!r}: expected kernel and bias, "
                    f"got {len(layer.weights)} arrays"
                )
            kernel, bias = layer.weights
            if kernel.ndim != 4:
                raise WeightConversionError(
                    f"layer {layer.name!r}: expected a 4-D kernel, got shape {kernel.shape}"
                )
            weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
            expected = tuple(conv.weight.shape)
            if weight.shape != expected or bias.shape != (expected[0],):
                raise WeightConversionError(
                    f"layer {layer.name!r} (weighted layer {index}): Keras kernel {kernel.shape} "
                    f"-> {weight.shape}, bias {bias.shape}; {arch} with {input_channels} input "
                    f"channels expects {expected}, bias ({expected[0]},)"
                )
            if index == pre_shuffle_index:
                weight, bias = depth_to_space_reorder(weight, bias, model.options.scale)
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            assert conv.bias is not None
            conv.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    log.info("converted %d Keras layers from %s into %s", len(layers), path, arch)
    return model
