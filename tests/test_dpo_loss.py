"""dpo_loss against TRL's formulas, written out by hand."""
import math

import pytest
import torch

from learner.loss import dpo_loss, preference_metrics


def logsig(x):
    return -math.log1p(math.exp(-x))


def inputs():
    pw = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    pl = torch.tensor([-2.0, -1.5, -3.0], requires_grad=True)
    rw = torch.tensor([-1.2, -1.8, -1.0], requires_grad=True)
    rl = torch.tensor([-1.9, -1.6, -2.0], requires_grad=True)
    return pw, pl, rw, rl


@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.0), (0.3, 0.2)])
def test_sigmoid_matches_formula(beta, eps):
    pw, pl, rw, rl = inputs()
    losses, cr, rr = dpo_loss(pw, pl, rw, rl, beta=beta, label_smoothing=eps)
    for i in range(3):
        h = (pw[i] - rw[i] - (pl[i] - rl[i])).item()
        expected = -(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h)
        assert losses[i].item() == pytest.approx(expected, rel=1e-6)
        assert cr[i].item() == pytest.approx(beta * (pw[i] - rw[i]).item(), rel=1e-6)
        assert rr[i].item() == pytest.approx(beta * (pl[i] - rl[i]).item(), rel=1e-6)


def test_ipo_and_hinge_match_formulas():
    pw, pl, rw, rl = inputs()
    beta = 0.2
    h = (pw - rw - (pl - rl)).detach()
    ipo, _, _ = dpo_loss(pw, pl, rw, rl, beta=beta, loss_type="ipo")
    hinge, _, _ = dpo_loss(pw, pl, rw, rl, beta=beta, loss_type="hinge")
    torch.testing.assert_close(ipo.detach(), (h - 1 / (2 * beta)) ** 2)
    torch.testing.assert_close(hinge.detach(), torch.relu(1 - beta * h))


def test_gradient_flows_to_the_policy_only_and_rewards_are_detached():
    pw, pl, rw, rl = inputs()
    losses, cr, rr = dpo_loss(pw, pl, rw, rl, beta=0.1)
    losses.sum().backward()
    assert pw.grad is not None and pl.grad is not None
    assert rw.grad is None and rl.grad is None
    assert not cr.requires_grad and not rr.requires_grad
    # d/dπ_w of −logσ(βh) = −β σ(−βh) < 0: raising the winner's log-prob lowers the loss
    assert (pw.grad < 0).all() and (pl.grad > 0).all()


def test_invalid_arguments_raise():
    pw, pl, rw, rl = inputs()
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pw, pl, rw, rl, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pw, pl, rw, rl, loss_type="hinge", label_smoothing=0.1)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(pw, pl, rw, rl, loss_type="kto")


def test_preference_metrics():
    losses = torch.tensor([0.5, 0.7])
    m = preference_metrics(losses, torch.tensor([0.2, -0.1]), torch.tensor([0.1, 0.3]))
    assert m["rewards/accuracies"] == 0.5
    assert m["rewards/margins"] == pytest.approx(((0.2 - 0.1) + (-0.1 - 0.3)) / 2)
    assert m["loss"] == pytest.approx(0.6)
