"""The skin-colour cue: the face's colour, and the agnostic image painted in it."""

from types import SimpleNamespace

import pytest
import torch

from gardiffmini import baselines
from gardiffmini.data.layout import PARSE
from gardiffmini.evaluate import person_conditions
from gardiffmini.skin import face_skin_colour, skin_primed_agnostic


def _faces(rows: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 8 x 6 images: a face of ``rows`` x 4 pixels, two of them dark eyes, on another
    colour."""
    images = torch.full((2, 3, 8, 6), -0.8)
    parse = torch.zeros(2, 8, 6, dtype=torch.long)
    parse[:, 1:1 + rows, 1:5] = PARSE["face"]
    images[0, :, 1:1 + rows, 1:5] = torch.tensor([0.6, 0.2, -0.1])[:, None, None]
    images[1, :, 1:1 + rows, 1:5] = torch.tensor([-0.2, -0.4, -0.5])[:, None, None]
    images[:, :, 2, 2] = images[:, :, 2, 3] = -1.0  # the eyes
    return images, parse


def test_face_skin_colour_is_the_median_of_the_face_not_its_eyes():
    images, parse = _faces()
    colour = face_skin_colour(images, parse, min_pixels=4)
    torch.testing.assert_close(colour, torch.tensor([[0.6, 0.2, -0.1], [-0.2, -0.4, -0.5]]))


def test_face_skin_colour_names_the_images_without_a_face():
    images, parse = _faces()
    parse[1] = PARSE["background"]
    with pytest.raises(ValueError, match=r"images \[1\] have fewer than 4 face pixels"):
        face_skin_colour(images, parse, min_pixels=4)
    with pytest.raises(ValueError, match=r"images \[0, 1\] have fewer than 16"):
        face_skin_colour(*_faces())  # 12 face pixels, below the default
    with pytest.raises(ValueError, match="parse must be"):
        face_skin_colour(images, parse[:, :4])
    with pytest.raises(ValueError, match="images must be"):
        face_skin_colour(images[:, :1], parse)


def test_skin_primed_agnostic_by_hand():
    agnostic = torch.full((2, 3, 4, 4), 0.25)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1
    mask[:, :, 2, 0] = 0.5  # a soft edge mixes the two
    colour = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    primed = skin_primed_agnostic(agnostic, mask, colour)
    torch.testing.assert_close(primed[:, :, :2], colour[:, :, None, None].expand(2, 3, 2, 4))
    torch.testing.assert_close(primed[:, :, 2, 0], 0.5 * colour + 0.125)
    torch.testing.assert_close(primed[:, :, 2, 1:], agnostic[:, :, 2, 1:])
    torch.testing.assert_close(primed[:, :, 3], agnostic[:, :, 3])
    with pytest.raises(ValueError, match=r"skin_colour must be \(B, 3\) = \(2, 3\)"):
        skin_primed_agnostic(agnostic, mask, colour[:1])


def test_the_skin_primed_baselines_paint_the_agnostic_region_in_the_face_colour():
    images, parse = _faces(rows=4)  # 16 face pixels: the default least
    mask = torch.zeros(2, 1, 8, 6)
    mask[:, :, 5:] = 1  # the arms
    warped_mask = torch.zeros(2, 1, 8, 6)
    warped_mask[:, :, 7:] = 1  # the garment covers part of them
    batch = {"agnostic": images, "parse": parse, "agnostic_mask": mask,
             "warped_mask": warped_mask, "warped_cloth": torch.full((2, 3, 8, 6), 1.0)}
    primed = baselines.skin_primed(batch)
    assert primed.keys() == batch.keys() and primed["parse"] is parse
    assert torch.equal(batch["agnostic"], images)  # the batch itself is left as it was
    skin = face_skin_colour(images, parse)
    pasted = baselines.warp_and_paste(primed)
    torch.testing.assert_close(pasted[:, :, 5:7], skin.add(1).div(2)[:, :, None, None]
                               .expand(2, 3, 2, 6))
    torch.testing.assert_close(pasted[:, :, 7:], torch.ones(2, 3, 1, 6))
    torch.testing.assert_close(pasted[:, :, :5], images[:, :, :5].add(1).div(2))


@pytest.mark.parametrize(("pose", "skin"), [(False, False), (True, False), (False, True),
                                            (True, True)])
def test_person_conditions_are_what_the_pipeline_reads(pose, skin):
    agnostic, parse = _faces(rows=6)  # 24 face pixels: enough to read a colour from
    batch = {"agnostic": agnostic, "parse": parse, "densepose": agnostic.flip(-1)}
    reads = SimpleNamespace(needs_densepose=pose, needs_skin_colour=skin)  # a pipeline's flags
    conditions = person_conditions(reads, batch)
    assert set(conditions) == {name for name, read in (("densepose", pose), ("skin_colour", skin))
                               if read}
    if pose:
        assert conditions["densepose"] is batch["densepose"]
    if skin:
        torch.testing.assert_close(conditions["skin_colour"], face_skin_colour(agnostic, parse))
