"""Users' own encoders as transfer sources: the original task bank's encoder layout, loading a weight file
(and refusing one that does not match, with one line naming it), and a project checkpoint."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from taskonomy.config import EncoderParams, Params, TaskParams, TrainTaskParams
from taskonomy.errors import DataError
from taskonomy.nets.external import TaskbankEncoder, load_taskbank_encoder, load_user_encoder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    encoder = TaskbankEncoder().eval()
    for m in encoder.modules():            # non-trivial BN statistics, so that loading them is checked too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "normal_encoder.pth"
    # as the ports save it: {"state_dict": ...}, here with a DataParallel prefix as well
    torch.save({"state_dict": {f"module.{k}": v for k, v in encoder.state_dict().items()}}, path)
    return encoder, path


def test_the_taskbank_encoder_has_the_original_shape_and_parameter_names():
    encoder = TaskbankEncoder().eval()
    with torch.no_grad():
        out = encoder(torch.zeros(1, 3, 256, 256))
    assert out.shape == (1, 8, 16, 16)                                 # 16x16x8 from 256 px
    names = set(encoder.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer2.3.conv2.weight",
            "layer3.5.bn3.bias", "layer4.2.conv3.weight", "compress1.weight", "compress_bn.weight"} <= names
    assert not any(k.startswith("layer1.2.downsample") for k in names)   # the strided unit's skip: a 1x1 max-pool
    assert encoder.layer1[2].conv2.stride == (2, 2) and encoder.layer3[0].conv2.stride == (1, 1)
    convs = sum(p.numel() for n, p in encoder.named_parameters() if "compress" not in n)
    assert 23_400_000 < convs < 23_600_000                             # ResNet-50's convolutions and BN, no fc


def test_a_weight_file_loads_and_gives_the_same_representation(weights):
    encoder, path = weights
    loaded = load_taskbank_encoder(path).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))


def test_a_user_encoder_outputs_the_task_networks_representation_size(weights):
    _, path = weights
    spec = EncoderParams(path=str(path), arch="taskonomy")
    encoder = load_user_encoder("taskbank_normal", spec, rep_hw=8)
    with torch.no_grad():
        rep = encoder(torch.zeros(3, 3, 32, 32))                        # the bank's 32 px images
    assert rep.shape == (3, 8, 8, 8) and not any(p.requires_grad for p in encoder.parameters())


def test_a_project_checkpoint_is_a_source_too(tmp_path):
    from taskonomy.nets.models import build_encoder
    from taskonomy.nets.train import save_checkpoint, task_checkpoint
    from taskonomy.tasks import get_task

    cfg = TrainTaskParams(width=4, bottleneck_stride=4)
    encoder = build_encoder(cfg).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, task_checkpoint(get_task("random"), cfg, encoder=encoder, params={}))
    loaded = load_user_encoder("mine", EncoderParams(path=str(path), arch="checkpoint"), rep_hw=2)
    with torch.no_grad():
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        assert loaded(x).shape == (1, 8, 2, 2)
        assert torch.allclose(loaded(torch.nn.functional.interpolate(x, size=8, mode="bilinear", antialias=True)),
                              encoder(torch.nn.functional.interpolate(x, size=8, mode="bilinear", antialias=True)))


@pytest.mark.parametrize("damage, match", [
    (lambda sd: {k: v for k, v in sd.items() if k != "compress1.weight"}, "no 'compress1.weight'"),
    (lambda sd: {**sd, "fc.weight": torch.zeros(1000, 2048)}, "an unknown 'fc.weight'"),
    (lambda sd: {**sd, "compress1.weight": torch.zeros(16, 2048, 3, 3)}, r"compress1.weight has shape \(16, 2048, 3, 3\)"),
])
def test_a_file_that_does_not_match_the_architecture_is_one_line(weights, tmp_path, damage, match):
    encoder, _ = weights
    path = tmp_path / "bad.pth"
    torch.save(damage(encoder.state_dict()), path)
    with pytest.raises(DataError, match=match) as err:
        load_taskbank_encoder(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_no_weight_file_is_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not weights")
    with pytest.raises(DataError, match="not a PyTorch weight file"):
        load_taskbank_encoder(path)
    with pytest.raises(DataError, match="no such weight file"):
        load_user_encoder("x", EncoderParams(path=str(tmp_path / "missing.pth")), rep_hw=8)


def test_encoders_join_the_sources_and_their_names_are_checked():
    from taskonomy.config import _check_params
    from taskonomy.errors import ParamsError

    tasks = {"rgb2depth": TaskParams(), "random": TaskParams(source_only=True)}
    params = Params(tasks=tasks, encoders={"taskbank_normal": EncoderParams(path="/w.pth")})
    assert params.sources() == ["rgb2depth", "random", "taskbank_normal"]
    for bad in ("rgb2sfnorm", "a__b", "pixels"):
        with pytest.raises(ParamsError, match=f"encoders.{bad}: a source's name"):
            _check_params(dataclasses.replace(params, encoders={bad: EncoderParams(path="/w.pth")}))
