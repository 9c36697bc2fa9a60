"""Promptable segmentation: click and box prompts to instance masks.

A :class:`~.base.PromptBackend` turns an image plus prompts into a mask. The
:class:`~.session.PromptSession` holds one image, its (cached) embedding and the
previous mask logits, and is what the napari Label dock and the simulated-user
evaluation (:mod:`.evaluation`) drive.
"""
