"""The speed options of the training step change the layout and the compilation, never the result."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from lightning_modules.simclr import SimCLR


def tiny_model(**overrides: object) -> SimCLR:
    arguments: dict[str, object] = dict(backbone="tiny_resnet", image_size=32, temperature=0.5, batch_size=8)
    arguments.update(overrides)
    return SimCLR(**arguments)  # type: ignore[arg-type]


def attach_fake_trainer(model: SimCLR, device_type: str) -> None:
    """setup() only asks the trainer which device it trains on."""
    fake = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device_type)))
    model._trainer = fake  # type: ignore[assignment]


def test_channels_last_converts_the_weights_and_keeps_the_loss() -> None:
    torch.manual_seed(0)
    plain, fast = tiny_model().eval(), tiny_model(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    attach_fake_trainer(fast, "cpu")
    fast.setup("fit")
    convolution = next(p for p in fast.encoder.parameters() if p.ndim == 4)
    assert fast.uses_channels_last and convolution.is_contiguous(memory_format=torch.channels_last)
    assert not convolution.is_contiguous()
    view1, view2 = torch.randn(2, 4, 3, 32, 32)
    fast._trainer = None
    logits_fast, _ = fast.contrastive_logits(view1, view2)
    logits_plain, _ = plain.contrastive_logits(view1, view2)
    torch.testing.assert_close(logits_fast, logits_plain, rtol=1e-4, atol=1e-4)
    assert set(fast.state_dict()) == set(plain.state_dict())


def test_channels_last_defaults_to_on_for_cuda_only() -> None:
    on_cpu, on_cuda = tiny_model(), tiny_model()
    attach_fake_trainer(on_cpu, "cpu")
    on_cpu.setup("fit")
    assert not on_cpu.uses_channels_last
    # The conversion itself is device-independent, so the CUDA decision can be checked on CPU.
    attach_fake_trainer(on_cuda, "cuda")
    on_cuda.setup("fit")
    assert on_cuda.uses_channels_last


def test_compile_compiles_in_place_and_keeps_the_checkpoint_keys() -> None:
    plain, compiled = tiny_model(), tiny_model(compile=True)
    attach_fake_trainer(compiled, "cpu")
    compiled.setup("fit")
    assert compiled.encoder._compiled_call_impl is not None
    assert compiled.projection_head._compiled_call_impl is not None
    assert plain.encoder._compiled_call_impl is None
    assert set(compiled.state_dict()) == set(plain.state_dict())
