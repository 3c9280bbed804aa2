"""A user's model file with data-dependent control flow (used by the CLI error tests)."""

from torch import nn


class Router(nn.Module):
    def forward(self, x):
        return x if x.mean() > 0 else -x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.router = Router()

    def forward(self, x):
        return self.router(self.conv(x))


def build():
    return Net()
