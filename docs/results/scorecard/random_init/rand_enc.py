"""An untrained encoder of the shipped encoder's architecture (beta_vae, default config), init
seed 123: the 'random encoder' scorecard of the closing note."""
import torch
from torch import nn

from sparseshift.representations.registry import make_learner


class RandomVAEEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.vae = make_learner("beta_vae", {"image_size": 64})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x)


def factory() -> nn.Module:
    return RandomVAEEncoder()
