"""Keras -> PyTorch conversion of the shared DFCAN / DFGAN files, checked against an independent
NumPy re-implementation of the authors' Keras graph (NHWC, TF1 resize, depth_to_space)."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import torch
from scipy.special import erf

from inference.keras_weights import (
    WeightConversionError,
    convert_keras_weights,
    depth_to_space_reorder,
    read_keras_layers,
)
from inference.model_file import load_model, save_model

FILES = {
    "sisr": ("dfcan_sisr_random_weights.h5", "dfcan", 1, 1_930_753, 0.8, 4, 4),
    "sim": ("dfcan_sim_random_weights.h5", "dfcan", 9, 1_935_361, 0.8, 4, 4),
    "dfgan": ("dfgan_g_sisr_random_weights.h5", "dfgan", 1, 5_717_129, 0.1, 5, 10),
}
MRC = "rDL-SIM_Microtubules_MT_raw9.mrc"
README_FRAME_MEANS = [27633, 27481, 27442, 35401, 35337, 35386, 30908, 30748, 30820]


# ---- an independent NumPy version of the authors' Keras graph (NHWC) ----------------------


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D 'same', stride 1: x (H, W, Cin), kernel (kh, kw, Cin, Cout)."""
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    padded = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[3]), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            out += padded[i : i + h, j : j + w, :] @ kernel[i, j]
    return out + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return (x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear, align_corners=False, half_pixel_centers=False, written as loops."""
    in_h, in_w = img.shape[:2]
    out = np.empty((out_h, out_w, *img.shape[2:]), dtype=np.float32)
    sy = np.float32(in_h) / np.float32(out_h)
    sx = np.float32(in_w) / np.float32(out_w)
    for y in range(out_h):
        fy = np.float32(y) * sy
        y0 = int(np.floor(fy))
        y1 = min(int(np.ceil(fy)), in_h - 1)
        ly = np.float32(fy - np.floor(fy))
        for x in range(out_w):
            fx = np.float32(x) * sx
            x0 = int(np.floor(fx))
            x1 = min(int(np.ceil(fx)), in_w - 1)
            lx = np.float32(fx - np.floor(fx))
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * lx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * lx
            out[y, x] = top + (bottom - top) * ly
    return out


def _authors_fftshift(x: np.ndarray) -> np.ndarray:
    """The authors' slicing-and-concat quadrant swap, transcribed literally."""
    h, w = x.shape[:2]
    fs11 = x[-h // 2 : h, -w // 2 : w]
    fs12 = x[-h // 2 : h, 0 : w // 2]
    fs21 = x[0 : h // 2, -w // 2 : w]
    fs22 = x[0 : h // 2, 0 : w // 2]
    return np.concatenate(
        [np.concatenate([fs11, fs21], axis=0), np.concatenate([fs12, fs22], axis=0)], axis=1
    )


def _fca(u: np.ndarray, layers: list, gamma: float) -> np.ndarray:
    spectrum = np.fft.fft2(u.astype(np.float64), axes=(0, 1))
    power = ((np.abs(spectrum) + 1e-8) ** gamma).astype(np.float32)
    power = _tf1_resize(_authors_fftshift(power), 128, 128)
    feat = np.maximum(_conv_same(power, *layers[0]), 0)
    pooled = feat.mean(axis=(0, 1), keepdims=True)
    squeezed = np.maximum(_conv_same(pooled, *layers[1]), 0)
    return _sigmoid(_conv_same(squeezed, *layers[2]))


def _depth_to_space(x: np.ndarray, s: int) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h, w, s, s, c // (s * s)).transpose(0, 2, 1, 3, 4).reshape(h * s, w * s, -1)


def keras_dfcan_numpy(x_hwc: np.ndarray, keras_path: Path, groups: int, blocks: int, gamma: float):
    """Forward pass of the authors' DFCAN graph straight from the Keras kernels."""
    layers = [
        tuple(w.astype(np.float32) for w in layer.weights)
        for layer in read_keras_layers(keras_path)
    ]
    it = iter(layers)
    x = _gelu(_conv_same(x_hwc.astype(np.float32), *next(it)))
    for _ in range(groups):
        group_in = x
        for _ in range(blocks):
            u = _gelu(_conv_same(x, *next(it)))
            u = _gelu(_conv_same(u, *next(it)))
            x = x + u * _fca(u, [next(it), next(it), next(it)], gamma)
        x = x + group_in
    x = _gelu(_conv_same(x, *next(it)))
    x = _depth_to_space(x, 2)
    return _sigmoid(_conv_same(x, *next(it)))[..., 0]


# ---- helpers -------------------------------------------------------------------------------


def _mrc_frames(assets: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no map ID / machine stamp in the header
        with mrcfile.open(assets / MRC, permissive=True) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32)
    return data  # (9, 256, 256)


def _min_max(stack: np.ndarray) -> np.ndarray:
    stack = stack.astype(np.float64)
    lo, hi = stack.min(), stack.max()
    return np.clip((stack - lo) / (hi - lo + 1e-7), 0, 1).astype(np.float32)


def _torch_forward(model: torch.nn.Module, chw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(chw[None]))[0, 0].numpy()


# ---- tests ---------------------------------------------------------------------------------


def test_mrc_frame_order_matches_readme(dlsr_assets: Path) -> None:
    frames = _mrc_frames(dlsr_assets)
    assert frames.shape == (9, 256, 256)
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), README_FRAME_MEANS, atol=1.0)


@pytest.mark.parametrize("key", list(FILES))
def test_converted_parameter_counts(dlsr_assets: Path, key: str) -> None:
    name, arch, channels, count, gamma, groups, blocks = FILES[key]
    model = convert_keras_weights(dlsr_assets / name, arch, channels)
    assert sum(p.numel() for p in model.parameters()) == count
    assert (model.options.gamma, model.options.groups, model.options.blocks) == (
        gamma,
        groups,
        blocks,
    )
    keras_total = sum(
        w.size for layer in read_keras_layers(dlsr_assets / name) for w in layer.weights
    )
    assert keras_total == count


@pytest.mark.parametrize(
    "key",
    ["sisr", "sim", pytest.param("dfgan", marks=pytest.mark.slow)],  # DFGAN: ~15 s
)
@pytest.mark.timeout(1800)  # ~5-15 s alone; minutes on the shared, overloaded 2-core machine
def test_forward_matches_keras_graph_on_crop(dlsr_assets: Path, key: str, tmp_path: Path) -> None:
    """Converted weights -> model file -> forward on a 32x32 crop == NumPy Keras graph (3e-5)."""
    name, arch, channels, _, gamma, groups, blocks = FILES[key]
    frames = _mrc_frames(dlsr_assets)[:, 100:132, 60:92]
    stack = frames if channels == 9 else frames.mean(axis=0, keepdims=True)
    x = _min_max(stack)
    model = convert_keras_weights(dlsr_assets / name, arch, channels)
    save_model(tmp_path / "m.pt", model, architecture=arch, mode="sim" if channels == 9 else "sisr")
    loaded = load_model(tmp_path / "m.pt").module
    ours = _torch_forward(loaded, x)
    reference = keras_dfcan_numpy(x.transpose(1, 2, 0), dlsr_assets / name, groups, blocks, gamma)
    assert ours.shape == (64, 64)
    error = np.abs(ours - reference).max()
    print(f"{key}: max |torch - keras graph| = {error:.2e}")
    assert error < 3e-5
    assert reference.std() > 1e-3  # the comparison is not between two constants


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dfcan_sim_full_mrc_matches_keras_graph(dlsr_assets: Path) -> None:
    """The whole 256x256 MRC through DFCAN-SIM (spectrum decimated 256 -> 128)."""
    x = _min_max(_mrc_frames(dlsr_assets))
    model = convert_keras_weights(dlsr_assets / FILES["sim"][0], "dfcan", 9)
    ours = _torch_forward(model, x)
    reference = keras_dfcan_numpy(x.transpose(1, 2, 0), dlsr_assets / FILES["sim"][0], 4, 4, 0.8)
    assert ours.shape == (512, 512)
    error = np.abs(ours - reference).max()
    print(f"full MRC: max |torch - keras graph| = {error:.2e}")
    assert error < 3e-5


def test_depth_to_space_reorder_matches_tf_layout() -> None:
    """PixelShuffle on reordered channels == TF depth_to_space on the original channels."""
    rng = np.random.default_rng(0)
    for scale in (2, 3):
        width = 5
        tf_features = rng.standard_normal((4, 3, width * scale * scale)).astype(np.float32)
        expected = _depth_to_space(tf_features, scale)  # (4s, 3s, width)
        weight = np.eye(width * scale * scale, dtype=np.float32)[:, :, None, None]
        bias = np.zeros(width * scale * scale, dtype=np.float32)
        reordered, _ = depth_to_space_reorder(weight, bias, scale)
        torch_in = np.einsum("oi,hwi->ohw", reordered[:, :, 0, 0], tf_features)
        got = torch.nn.PixelShuffle(scale)(torch.from_numpy(torch_in)[None])[0].numpy()
        np.testing.assert_array_equal(got.transpose(1, 2, 0), expected)


def test_wrong_architecture_is_named(dlsr_assets: Path) -> None:
    with pytest.raises(WeightConversionError, match=r"253 layers with weights.*83 conv"):
        convert_keras_weights(dlsr_assets / FILES["dfgan"][0], "dfcan", 1)
    with pytest.raises(
        WeightConversionError, match=r"layer 'conv2d'.*\(3, 3, 9, 64\).*\(64, 1, 3, 3\)"
    ):
        convert_keras_weights(dlsr_assets / FILES["sim"][0], "dfcan", 1)
    with pytest.raises(WeightConversionError, match="input-channels"):
        convert_keras_weights(dlsr_assets / FILES["sim"][0], "dfcan", 4)


def test_layers_with_weights_follow_layer_names(tmp_path: Path) -> None:
    """Position, not name, decides: a file whose names start at conv2d_1 converts the same way."""
    path = tmp_path / "tiny.h5"
    rng = np.random.default_rng(1)
    names = ["input_1", "conv2d_7", "lambda", "conv2d_1"]
    shapes = {"conv2d_7": (3, 3, 1, 4), "conv2d_1": (3, 3, 4, 2)}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for n in names:
            g = f.create_group(n)
            if n in shapes:
                g.attrs["weight_names"] = np.array(
                    [f"{n}/kernel:0".encode(), f"{n}/bias:0".encode()]
                )
                g.create_dataset(f"{n}/kernel:0", data=rng.standard_normal(shapes[n]))
                g.create_dataset(f"{n}/bias:0", data=rng.standard_normal(shapes[n][-1]))
            else:
                g.attrs["weight_names"] = np.array([], dtype="S1")
    layers = read_keras_layers(path)
    assert [layer.name for layer in layers] == ["conv2d_7", "conv2d_1"]
    assert layers[0].weights[0].shape == (3, 3, 1, 4)
