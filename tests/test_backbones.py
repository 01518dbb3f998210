"""torchvision backbones: built for the domain's inputs and classes, pretrained weights from
a state dict the test writes (nothing is downloaded), a frozen backbone, and checkpoints
that rebuild the same network."""

import pytest
import torch

from sieve.config import ARCHS
from sieve.store import ModelStore
from tests.photos import write_state_dict
from training import backbones, checkpoint, train
from training.augment import PhotoAugment, augmentation
from training.engine import Augment
from training.models import ARCH_OPTIONS, architecture, build_model, create
from training.preprocess import FASHION_MNIST, folder_preprocessing


def test_training_runs_offer_the_networks_the_cli_builds():
    """Training runs (torch-free) check `arch` against the names `--arch` takes."""
    assert tuple(ARCH_OPTIONS) == ARCHS


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
@pytest.mark.parametrize("channels", [1, 3])
def test_backbone_fits_channels_and_classes(name, channels):
    """Grey or colour input, any size, as many logits as the domain has classes."""
    model = build_model(architecture(channels, 5, name=name)).eval()
    assert model(torch.zeros(2, channels, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_pretrained_state_dict_loads_all_but_the_head(tmp_path, name):
    """--weights PATH: every backbone tensor comes from the file, the head stays new."""
    path = write_state_dict(tmp_path / "weights.pt", name)
    saved = torch.load(path, weights_only=True)
    model = create(architecture(3, 4, name=name), str(path))
    own = model.state_dict()
    head = backbones.BACKBONES[name].head
    for key, value in saved.items():
        if key.startswith(head + "."):
            assert own[key].shape[0] == 4
        else:
            assert torch.equal(own[key], value), key


def test_grey_input_sums_the_rgb_filters(tmp_path):
    """A grey domain keeps the pretrained first convolution, summed over its colours."""
    path = write_state_dict(tmp_path / "weights.pt")
    model = create(architecture(1, 10, name="resnet18"), str(path))
    rgb = torch.load(path, weights_only=True)["conv1.weight"]
    assert torch.allclose(model.conv1.weight, rgb.sum(1, keepdim=True))


def test_weights_of_another_network_are_refused_by_name(tmp_path):
    """A state dict of another backbone: the error names missing and unexpected keys."""
    path = write_state_dict(tmp_path / "mobilenet.pt", "mobilenet_v3_small")
    with pytest.raises(backbones.WeightsError, match=r"does not hold resnet18 weights: missing "
                                                     r"bn1\..*unexpected classifier\."):
        create(architecture(3, 2, name="resnet18"), str(path))


def test_files_that_are_no_state_dict_are_refused(tmp_path):
    """Text, or a pickle of something else, is not a state dict."""
    (tmp_path / "notes.pt").write_text("not weights")
    with pytest.raises(backbones.WeightsError, match="not a readable PyTorch state dict"):
        create(architecture(3, 2, name="resnet18"), str(tmp_path / "notes.pt"))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(backbones.WeightsError, match="holds no state dict"):
        create(architecture(3, 2, name="resnet18"), str(tmp_path / "list.pt"))


def test_unknown_weights_name_lists_torchvision_names(tmp_path):
    """Neither a file nor a torchvision weights name: the choices are named, nothing is
    fetched."""
    with pytest.raises(backbones.WeightsError, match=r"no such file.*DEFAULT, IMAGENET1K_V1"):
        create(architecture(3, 2, name="resnet18"), str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_frozen_backbone_trains_the_head_only(tmp_path, name):
    """--freeze-backbone: the head's parameters alone take gradients."""
    path = write_state_dict(tmp_path / "weights.pt", name)
    model = create(architecture(3, 3, name=name), str(path), freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{backbones.BACKBONES[name].head}.weight",
                         f"{backbones.BACKBONES[name].head}.bias"}


def test_checkpoint_rebuilds_the_same_backbone(tmp_path):
    """What a checkpoint describes, serving builds: the same outputs for the same input."""
    arch = architecture(3, 3, name="mobilenet_v3_small")
    model = build_model(arch).eval()
    checkpoint.save(tmp_path / "model.pt", model, architecture=arch)
    rebuilt = checkpoint.build(checkpoint.read(tmp_path / "model.pt"))
    x = torch.rand(2, 3, 48, 48)
    assert torch.allclose(model(x), rebuilt(x))


@pytest.mark.parametrize("options", [["--weights", "DEFAULT"], ["--freeze-backbone"],
                                     ["--arch", "resnet18", "--freeze-backbone"]])
def test_backbone_options_that_do_not_fit_are_refused(options, caplog):
    """Weights for the small CNN, or a frozen backbone with nothing to start from."""
    assert train.cli(["--train", *options]) == 2
    assert "--freeze-backbone" in caplog.text


def test_photo_augmentation_follows_its_generator():
    """The photo preset's transforms.v2 augmentation keeps shape and dtype, and the same
    generator seed gives the same batch."""
    assert isinstance(augmentation(FASHION_MNIST, 0.5), Augment)
    augment = augmentation(folder_preprocessing(32), 0.5)
    assert isinstance(augment, PhotoAugment)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    first = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(2)))


def test_published_model_lends_its_backbone(tmp_path):
    """--weights store:<model>/<version>: the backbone of a published version (a training
    run may name no path on the worker, but may name this)."""
    arch = architecture(3, 1, name="resnet18")
    published = build_model(arch)
    checkpoint.save(tmp_path / "model.pt", published, architecture=arch)
    store = ModelStore(tmp_path / "store")
    store.publish("filter", {"model.pt": tmp_path / "model.pt"}, {"name": "filter"})
    args = train.get_args_parser().parse_args(
        ["--weights", "store:filter/v1", "--model-store", str(store.root)])
    model = create(architecture(3, 4, name="resnet18"), train.resolve_weights(args))
    assert torch.equal(model.conv1.weight, published.conv1.weight)
    assert model.fc.weight.shape == (4, 512)
