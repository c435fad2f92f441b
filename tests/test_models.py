"""The model contract: raw logits, penultimate features, a linear head with K or K+1 outputs."""

import pytest
import torch

from moon.config import MODELS, RunConfig
from moon.architectures import build_model
from moon.models import model_for, num_outputs

SHAPES = [(1, 28), (3, 32)]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels, size", SHAPES)
def test_logits_features_and_head(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, 11, channels, size).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert isinstance(model.head, torch.nn.Linear)
    assert logits.shape == (3, 11)
    assert feats.shape == (3, model.head.in_features)
    # forward is exactly head(features): raw logits, not log-probabilities
    torch.testing.assert_close(logits, model.head(feats))
    assert not torch.allclose(torch.logsumexp(logits, 1), torch.zeros(3))


def test_k_plus_one_head_follows_the_config():
    assert num_outputs(RunConfig(unknown_class=True)) == 11
    assert num_outputs(RunConfig(unknown_class=False)) == 10
    assert num_outputs(RunConfig(dataset="fashion_mnist_6")) == 7
    assert num_outputs(RunConfig(dataset="cifar100", model="resnet18")) == 101
    assert model_for(RunConfig(dataset="cifar10", model="resnet18")).head.out_features == 11


def test_reference_architectures():
    mlp = build_model("mlp", 10, 1, 28)
    widths = [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [300, 100, 10]  # LeNet-300-100
    resnet = build_model("resnet18", 10, 3, 32)
    stem = resnet.body[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)  # CIFAR stem
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in resnet.modules())
    assert resnet.head.in_features == 512


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="mlp, lenet5, resnet18, wrn"):
        build_model("vgg", 10, 1, 28)
