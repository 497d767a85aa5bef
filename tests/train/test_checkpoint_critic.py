"""#17 defect 22 (train part): a critic state dict wrapped under ``netD`` (the authors' 2018 files) is named a critic.

Before, it fell through the generator wrapper keys and got the generic "holds no generator state dict
we recognise"; the user could not tell they had passed the discriminator.
"""
import pytest
import torch

from deblur.runtime.errors import WrongModelError
from deblur.runtime.spec import ModelSpec
from deblur.train import checkpoint as ck
from deblur.train.networks import Critic, Generator


def _critic_state(prefix=""):
    torch.manual_seed(0)
    return {prefix + k: v for k, v in Critic(ndf=8).state_dict().items()}


@pytest.mark.parametrize("wrapper", [
    lambda: {"netD": _critic_state()},
    lambda: {"netD": _critic_state("module.")},  # saved from DataParallel
    lambda: {"netD": _critic_state(), "epoch": torch.tensor(300)},
    lambda: {"discriminator": _critic_state()},
], ids=["netD", "netD-module", "netD-with-extras", "discriminator"])
def test_wrapped_critic_is_named_a_critic(tmp_path, wrapper):
    path = tmp_path / "latest_net_D.pth"
    torch.save(wrapper(), path)
    with pytest.raises(WrongModelError) as e:
        ck.load_generator_weights(path)
    msg = str(e.value)
    assert "critic (discriminator)" in msg and str(path) in msg and "\n" not in msg
    assert "latest_net_G.pth" in msg  # what to pass instead


def test_a_file_with_both_loads_the_generator(tmp_path):
    spec = ModelSpec("t", ngf=8, n_blocks=2)
    g = Generator(spec).state_dict()
    torch.save({"netG": g, "netD": _critic_state()}, tmp_path / "both.pth")
    w = ck.load_generator_weights(tmp_path / "both.pth")
    assert "'netG'" in w.layout and w.spec.ngf == 8


def test_train_init_with_a_wrapped_critic_is_one_line(tmp_path, capsys):
    from deblur.train.train_cli import main

    torch.save({"netD": _critic_state()}, tmp_path / "latest_net_D.pth")
    rc = main(["--init", str(tmp_path / "latest_net_D.pth"), "--sharp", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "critic (discriminator)" in err[0], err
