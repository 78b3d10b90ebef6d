"""One set of checks run over every registered architecture (small widths for speed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from perception.models import (
    UnknownArchError,
    available_archs,
    build_model,
    transformers_available,
)
from perception.models.segformer import INSTALL_HINT

torch.set_num_threads(2)

# Tiny configurations so forward + backward runs in well under a second each.
TINY: dict[str, dict] = {
    "unet": {"base_width": 4},
    "unet-transpose": {"base_width": 4, "upsample": "transpose"},
    "unet-nearest": {"base_width": 4, "upsample": "nearest", "depth": 3},
    "unet_ds": {"base_width": 4},
    "unet_ds-depth3": {"base_width": 4, "depth": 3, "decoder_ratio": 1.0},
    "lanelite": {"width": 8},
    "lanefast": {"width": 8},
    "enet": {},
    "enet-bilinear": {"upsample": "bilinear"},
    "deeplabv3plus": {"width_mult": 0.25, "aspp_channels": 16, "decoder_channels": 16},
    "segformer": {},
}
SIZES = [(160, 320), (256, 256)]


def _build(name: str, **extra) -> nn.Module:
    arch = name.split("-")[0]  # "unet_ds-depth3" -> "unet_ds"
    if arch == "segformer" and not transformers_available():
        pytest.skip(f"segformer needs transformers ({INSTALL_HINT})")
    torch.manual_seed(0)
    return build_model(arch, **TINY[name], **extra)


def test_registry_lists_every_arch() -> None:
    assert available_archs() == ["deeplabv3plus", "enet", "lanefast", "lanelite", "segformer", "unet", "unet_ds"]


def test_unknown_arch_lists_options() -> None:
    with pytest.raises(KeyError, match="available: deeplabv3plus, enet, lanefast, lanelite, segformer, unet, unet_ds"):
        build_model("resnet")
    with pytest.raises(UnknownArchError):
        build_model("resnet")


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_forward_shape(name: str, size: tuple[int, int]) -> None:
    model = _build(name).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *size))
    assert y.shape == (2, 1, *size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", TINY)
def test_multiclass_backward(name: str) -> None:
    model = _build(name, num_classes=3).train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    logits = model(x)
    assert logits.shape == (2, 3, 64, 64)
    loss = nn.functional.cross_entropy(logits, target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", TINY)
def test_config_rebuilds_same_network(name: str) -> None:
    model = _build(name).eval()
    clone = build_model(model.arch, **model.config).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


@pytest.mark.parametrize(
    ("upsample", "expected"),
    [("transpose", 1_942_577), ("bilinear", 2_160_417)],
)
def test_unet_param_count(upsample: str, expected: int) -> None:
    # The classic shape (w16, depth 4, ConvTranspose2d) is 1.94M params (QUANT.md).
    model = build_model("unet", base_width=16, depth=4, upsample=upsample)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_unet_default_decoder_has_no_transposed_conv() -> None:
    # The default must quantize on every int8 path: no ConvTranspose2d anywhere.
    model = build_model("unet")
    assert model.config["upsample"] == "bilinear"
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


@pytest.mark.parametrize(
    ("arch", "kwargs", "size", "padded"),
    [
        ("unet", {"base_width": 4}, (150, 320), "160x320"),
        ("unet", {"base_width": 4, "depth": 3}, (100, 100), "104x104"),
        ("enet", {}, (60, 84), "64x88"),
        ("lanelite", {}, (60, 84), "64x88"),
        ("lanefast", {}, (60, 84), "64x88"),
        ("unet_ds", {"base_width": 4}, (150, 320), "160x320"),
    ],
)
def test_bad_size_names_padded_size(arch: str, kwargs: dict, size, padded: str) -> None:
    model = build_model(arch, **kwargs)
    with pytest.raises(ValueError, match=f"to {padded}"):
        model(torch.randn(1, 3, *size))


def test_wrong_channels_rejected() -> None:
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        build_model("unet", base_width=4)(torch.randn(1, 1, 64, 64))


def test_bad_options_rejected() -> None:
    with pytest.raises(ValueError, match="upsample"):
        build_model("unet", upsample="pixelshuffle")
    with pytest.raises(TypeError):
        build_model("unet", widht=16)


def test_segformer_without_transformers_says_how_to_install(monkeypatch) -> None:
    import perception.models.segformer as seg

    monkeypatch.setattr(seg, "transformers_available", lambda: False)
    with pytest.raises(ImportError, match=r"laneloop\[zoo\]"):
        build_model("segformer")


def test_unet_channels_rebuild_a_pruned_shape() -> None:
    from perception.models.unet import conv_names, default_channels

    assert len(conv_names(3)) == len(default_channels(3, 8)) == 17
    full = build_model("unet", base_width=8, depth=3)
    same = build_model("unet", base_width=8, depth=3, channels=default_channels(3, 8))
    assert "channels" not in full.config  # unpruned checkpoints keep their kwargs
    assert set(full.state_dict()) == set(same.state_dict())
    assert all(full.state_dict()[k].shape == v.shape for k, v in same.state_dict().items())
    half = build_model("unet", base_width=8, depth=3, channels=[max(1, c // 2) for c in default_channels(3, 8)])
    assert half(torch.randn(1, 3, 64, 128)).shape == (1, 1, 64, 128)
    with pytest.raises(ValueError, match="17 positive widths"):
        build_model("unet", base_width=8, depth=3, channels=[4, 4])


@pytest.mark.parametrize("name", ["unet", "unet-transpose", "unet_ds", "lanelite", "lanefast", "enet", "deeplabv3plus"])
def test_torch_export(name: str) -> None:
    # PT2E quantization (QUANT.md) starts from torch.export: every zoo model must export.
    model = _build(name).eval()
    x = torch.randn(1, 3, 64, 128)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), rtol=1e-4, atol=1e-5)
