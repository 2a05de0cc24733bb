"""Image-derived prompts: morphology groups from a frozen encoder + k-means, described by centroid."""

from synthaug.prompts.describe import MENTION_Z, VOCABULARY, describe_centroid
from synthaug.prompts.morphometrics import MASK_FEATURES, STAIN_FEATURES, mask_features, stain_features
from synthaug.prompts.prompter import MorphologyPrompter, PromptAssignment

__all__ = [
    "MASK_FEATURES",
    "MENTION_Z",
    "STAIN_FEATURES",
    "VOCABULARY",
    "MorphologyPrompter",
    "PromptAssignment",
    "describe_centroid",
    "mask_features",
    "stain_features",
]
