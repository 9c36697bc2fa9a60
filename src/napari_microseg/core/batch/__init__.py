"""Headless batch processing: recipes, one image through a recipe, a Dask runner, a report."""

from .process import ImageResult, output_paths, process_image
from .recipe import (
    PIXEL_POLICIES,
    InferenceSettings,
    PixelSizePolicy,
    Recipe,
    RecipeError,
)
from .runner import BatchRun, collect_inputs, run_batch

__all__ = [
    "PIXEL_POLICIES",
    "BatchRun",
    "ImageResult",
    "InferenceSettings",
    "PixelSizePolicy",
    "Recipe",
    "RecipeError",
    "collect_inputs",
    "output_paths",
    "process_image",
    "run_batch",
]
