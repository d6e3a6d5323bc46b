import pytest
import torch

from gardiffmini import probes
from gardiffmini.data.toyviton import generate
from gardiffmini.models import encoders
from gardiffmini.models import vae as vae_model
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

PROFILE = get_profile("ci", probe_steps=3, batch_size=4)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toyviton-ci"
    return generate(root, CI, n_train=12, n_test=6, workers=1, progress=False)


@pytest.fixture(scope="module")
def garment_sets(toy_root):
    return probes.load_garments(toy_root, "train", PROFILE), probes.load_garments(
        toy_root, "test", PROFILE)


@pytest.fixture(scope="module")
def features(garment_sets):
    torch.manual_seed(0)
    vae = vae_model.make_vae(PROFILE).eval()
    clip = encoders.clip_image_encoder(encoders.make_clip(PROFILE, encoders.build_tokenizer()))
    train, test = garment_sets
    return (probes.encode_garments(vae, clip, train.images),
            probes.encode_garments(vae, clip, test.images))


def test_load_garments_gives_images_masks_and_attributes(garment_sets):
    train, test = garment_sets
    assert train.images.shape == (12, 3, 64, 48) and train.images.dtype == torch.uint8
    assert train.masks.shape == (12, 1, 64, 48)
    assert set(train.masks.unique().tolist()) <= {0.0, 1.0} and train.masks.mean() > 0.1
    assert len(test.patterns) == 6


def test_encode_garments_shapes(features):
    train, _ = features
    assert train["CLIP"].shape == (12, PROFILE.clip_embed_dim)
    assert train["VAE"].shape == (12, PROFILE.latent_channels, *PROFILE.latent_size)


def test_standardize_uses_train_statistics():
    train, test = torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]])
    a, b = probes.standardize(train, test)
    torch.testing.assert_close(a, torch.tensor([[-0.7071], [0.7071]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(b, torch.tensor([[2.1213]]), atol=1e-4, rtol=0)


def test_probe_decoders_have_the_same_trunk():
    clip = probes.ProbeDecoder((32,), PROFILE)
    vae = probes.ProbeDecoder((4, 16, 12), PROFILE)
    assert [p.shape for p in clip.trunk.parameters()] == [p.shape for p in vae.trunk.parameters()]
    assert clip(torch.randn(2, 32)).shape == vae(torch.randn(2, 4, 16, 12)).shape == (2, 3, 64, 48)
    with pytest.raises(ValueError, match="feature_shape"):
        probes.ProbeDecoder((4, 8, 8), PROFILE)


def test_reconstruction_scores_reference_values():
    target = torch.rand(2, 3, 32, 24) * 2 - 1
    masks = torch.ones(2, 1, 32, 24)
    perfect = probes.reconstruction_scores(target, target, masks)
    assert torch.all(perfect["PSNR"] > 80) and torch.allclose(perfect["SSIM"], torch.ones(2))
    assert torch.allclose(perfect["edge error"], torch.zeros(2), atol=1e-4)
    torch.testing.assert_close(perfect["HF energy kept"], torch.ones(2))
    shifted = probes.reconstruction_scores((target + 0.2).clamp(-1, 1), target, masks)
    mse = (((target + 0.2).clamp(-1, 1) - target) / 2).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(shifted["PSNR"], -10 * torch.log10(mse))


def test_summarize_groups_by_pattern():
    table = probes.summarize({"PSNR": torch.tensor([10.0, 20.0, 30.0])}, ["a", "b", "a"])
    assert table == {"all": {"PSNR": 20.0}, "a": {"PSNR": 20.0}, "b": {"PSNR": 20.0}}


def test_reconstruction_probe_end_to_end(features, garment_sets, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))
    train, test = garment_sets
    result = probes.reconstruction_probe(*features, train, test, PROFILE, progress=False)
    assert set(result["table"]) == {"CLIP", "VAE"}
    target = encoders.to_float(test.images)
    for name in ("CLIP", "VAE"):
        rebuilt = result["reconstructions"][name]
        assert rebuilt.shape == (6, 3, 64, 48)
        assert torch.isfinite(rebuilt).all()  # clamped to [-1, 1]: a range check cannot fail
        scores = probes.reconstruction_scores(rebuilt, target, test.masks)  # of these images
        torch.testing.assert_close(result["scores"][name]["PSNR"], scores["PSNR"])
        assert set(result["table"][name]) == {"all", *test.patterns}
        assert result["scores"][name]["SSIM"].shape == (6,)
    assert len(list(tmp_path.glob("runs/probe-clip-ci-*"))) == 1


def test_attribute_labels_and_majority():
    attributes = [
        {"colors": ["red"], "category": "t-shirt", "pattern": "plain", "stripe_frequency": 0},
        {"colors": ["blue", "red"], "category": "tank top", "pattern": "stripes",
         "stripe_frequency": 24},
    ]
    labels = probes.attribute_labels(attributes)
    assert labels["colour"][0].tolist() == [labels["colour"][1].index("red"),
                                            labels["colour"][1].index("blue")]
    assert labels["stripe frequency"][0].tolist() == [-1, encoders.FREQUENCY_BINS.index("thin")]
    assert probes.majority_accuracy(torch.tensor([1, 1, 0]), torch.tensor([1, 0, -1])) == 0.5


def test_linear_probe_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = {"sign": (x[:, 0] > 0).long()}
    accuracy = probes.linear_probe_accuracies(x[:150], {"sign": y["sign"][:150]}, x[150:],
                                              {"sign": y["sign"][150:]}, {"sign": 2}, steps=100)
    assert accuracy["sign"] > 0.9
    with pytest.raises(ValueError, match="labelled"):
        probes.linear_probe_accuracies(x, {"none": torch.full((200,), -1)}, x,
                                       {"none": torch.full((200,), -1)}, {"none": 2})


def test_attribute_probe_table(features, garment_sets):
    train, test = garment_sets
    table = probes.attribute_probe(*features, train, test, steps=5)
    assert set(table) == {"CLIP", "VAE", "majority"}
    assert set(table["CLIP"]) == set(table["majority"]) <= set(probes.ATTRIBUTES)
    assert all(0 <= v <= 1 for row in table.values() for v in row.values())


def test_power_spectra_and_detail_examples(garment_sets):
    _, test = garment_sets
    images = encoders.to_float(test.images)
    spectra = probes.power_spectra({"garment": images, "blurred": images * 0})
    assert spectra["garment"].shape == spectra["freqs"].shape
    assert torch.all(spectra["blurred"] == 0) and spectra["garment"][1:].sum() > 0
    attributes = [{"pattern": "stripes", "stripe_frequency": 3},
                  {"pattern": "text", "stripe_frequency": 0},
                  {"pattern": "stripes", "stripe_frequency": 24}]
    assert probes.detail_examples(attributes) == {"printed text": 1, "fine stripes": 2}
