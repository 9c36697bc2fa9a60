"""Ensembles: the mean class probabilities of several semantic models.

An ensemble card has ``architecture = "ensemble"``, ``activation = "none"``
and ``params = {"members": [name, ...]}``; it has no weights of its own. The
members must agree on classes, input channels, normalisation and pixel size
(:func:`check_members`), so averaging their probabilities is meaningful.
"""

from __future__ import annotations

import torch
from torch import nn

from .card import ModelCard, ModelError
from .network_io import input_multiple, lcm, to_probabilities


class Ensemble(nn.Module):
    """Averages the class probabilities of member models.

    Parameters
    ----------
    members : list of (nn.Module, ModelCard)
        Semantic models and their cards; each member's output goes through
        its own card's activation before averaging.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(m for m, _ in members)
        self.activations = [c.activation for _, c in members]
        self.input_multiple = lcm(input_multiple(m) for m, _ in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for model, act in zip(self.members, self.activations, strict=True):
            p = to_probabilities(model(x), act)
            total = p if total is None else total + p
        return total / len(self.members)


def check_members(card: ModelCard, member_cards: list[ModelCard]) -> None:
    """Raise :class:`ModelError` unless the members fit together and fit ``card``."""
    if not member_cards:
        raise ModelError(f"Ensemble {card.name!r} lists no members.")
    for m in member_cards:
        if m.task != "semantic":
            raise ModelError(f"Ensemble {card.name!r}: member {m.name!r} is not a semantic model.")
        for key in ("classes", "in_channels", "normalization", "pixel_size_nm"):
            if getattr(m, key) != getattr(card, key):
                raise ModelError(
                    f"Ensemble {card.name!r}: member {m.name!r} has different {key} "
                    f"({getattr(m, key)!r} vs {getattr(card, key)!r})."
                )


def ensemble_card(name: str, member_cards: list[ModelCard], **fields) -> ModelCard:
    """A card for the ensemble of ``member_cards`` (classes etc. from the first)."""
    if not member_cards:
        raise ModelError(f"Ensemble {name!r} lists no members.")
    first = member_cards[0]
    card = ModelCard(
        name=name,
        architecture="ensemble",
        params={"members": [m.name for m in member_cards]},
        classes=first.classes,
        task="semantic",
        activation="none",
        in_channels=first.in_channels,
        normalization=first.normalization,
        pixel_size_nm=first.pixel_size_nm,
        tile=fields.pop("tile", max(m.tile for m in member_cards)),
        halo=fields.pop("halo", max(m.halo for m in member_cards)),
        thresholds=fields.pop("thresholds", dict(first.thresholds)),
        **fields,
    )
    check_members(card, member_cards)
    return card
