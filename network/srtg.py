"""Squeeze and Recursion (SR) blocks with temporal cycle-consistency gates (SRTG).

Stergiou & Poppe, "Learn to cycle: time-consistent feature discovery for action recognition"
(PRL 2021). After a residual block, the SR block squeezes every frame to a channel vector by
global average pooling, runs a 2-layer recurrent cell over time and recalibrates the block output
with the recurrent output. With gates on, only samples whose pooled sequence and recurrent output
are temporally cycle-consistent are recalibrated; the others pass through unchanged, so the
recurrent cell learns only from consistent samples.

Recalibration (shared/reference/video.md, Part E bug 26): the paper multiplies by the recurrent
output h ∈ (−1, 1) (``recalibration="paper"``, the default of the ``srtg_*`` networks). That
shrinks activations by about |h| ≈ 0.16 per block at init (≈100× by stage 4 of a 50-layer net) and
flips signs where h < 0. ``recalibration="residual"`` uses ``x · (1 + h)`` instead: the factor lies
in (0, 2), so it is ≈ 1 at init and never flips a sign, while the block can still learn to damp or
amplify channels. Choose it explicitly; results then differ from the paper's networks.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RECALIBRATIONS", "RECURRENT_CELLS", "SqueezeRecursion", "cycle_consistent"]

# recalibration name -> scale computed from the recurrent output h (N, T, C)
RECALIBRATIONS = {
    "paper": lambda hidden: hidden,  # x·h, as in the paper and the reference code
    "residual": lambda hidden: 1.0 + hidden,  # x·(1+h): scale ≈ 1 at init, never negative
}

# cell name -> recurrent module class (SRTG uses an LSTM, MTNet's recurrent branch a GRU)
RECURRENT_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def cycle_consistent(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Which samples are temporally cycle-consistent between two sequences.

    first, second: (N, T, C). With ``D[b, i, j] = ‖first[b, i] − second[b, j]‖²``, a sample is
    consistent first→second when ``argmin_j D[b, i, j] == i`` for every i, and second→first when
    ``argmin_i D[b, i, j] == j`` for every j; the result is the OR of both directions, (N,) bool.
    """
    first, second = first.detach().float(), second.detach().float()
    distances = (first.unsqueeze(2) - second.unsqueeze(1)).square().sum(dim=-1)  # (N, T, T)
    steps = torch.arange(first.shape[1], device=first.device)
    forward = (distances.argmin(dim=2) == steps).all(dim=1)
    backward = (distances.argmin(dim=1) == steps).all(dim=1)
    return forward | backward


class SqueezeRecursion(nn.Module):
    """SR block: (N, C, T, H, W) → (N, C, T, H, W), optionally with a cycle-consistency gate.

    The gate is on when built with ``gates=True`` and the persistent buffer ``gate_enabled`` is
    true (the owning network sets it per epoch); while it is off every sample is recalibrated.
    ``last_pass_fraction`` holds the fraction of the last batch found consistent (a detached 0-dim
    tensor, read only for logging; no host sync in forward), or ``None`` before the first gated pass.
    """

    def __init__(
        self,
        channels: int,
        *,
        gates: bool = False,
        recalibration: str = "paper",
        cell: str = "lstm",
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        if recalibration not in RECALIBRATIONS:
            raise ValueError(f"recalibration must be one of {sorted(RECALIBRATIONS)}")
        self.recurrent = RECURRENT_CELLS[cell](channels, channels, num_layers, batch_first=True)
        self.recalibration = recalibration
        self.gates = gates
        if gates:
            self.register_buffer("gate_enabled", torch.tensor(True))
        self.last_pass_fraction: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(3, 4)).transpose(1, 2).contiguous()  # (N, T, C)
        hidden, _ = self.recurrent(squeezed)
        scale = RECALIBRATIONS[self.recalibration](hidden).transpose(1, 2)[..., None, None]
        recalibrated = x * scale.to(x.dtype)
        if not self.gates:
            return recalibrated
        consistent = cycle_consistent(squeezed, hidden)
        self.last_pass_fraction = consistent.float().mean()
        passes = consistent | ~self.gate_enabled
        return torch.where(passes.view(-1, 1, 1, 1, 1), recalibrated, x)
