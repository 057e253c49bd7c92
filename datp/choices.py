"""Every named choice a user makes, as ``Literal`` types, and the bounds of the sizes a user sets.

A foundation that imports nothing of datp and no torch, so that ``datp.config`` (which types its
fields with these) loads without torch, and the parts below the engine import the names from
here, never from the config. Each choice is backed by a table of code beside the part that
implements it; ``tests/test_choices.py`` holds every ``Literal`` here against its table, so a
name added here without its code (or code without its name) fails the tests instead of falling
through to a default.

    choice              its table (the code that implements each name)
    Format              datp.data.formats.FORMATS
    Source              datp.data.sources.SOURCES
    FeatureLayout       datp.data.features.FEATURE_LAYOUTS
    Decoder             datp.data.video.DECODERS
    DecodePlace         datp.data.device_decode.DECODE_PLACES
    Modality            datp.data.dataset.MODALITIES
    TestCrops           datp.data.transforms.CROPS
    Backbone            datp.models.backbone.BACKBONES
    PoolingKind         datp.pooling.build.POOLINGS
    PoolSpace           datp.pooling.functional.POOL_SPACES
    AuxInput            datp.pooling.build.AUX_NETS, datp.models.tsn.AUX_FEATURES
    GeneratorKind       datp.pooling.build.GENERATORS
    DiscreteActivation  datp.pooling.generators.ACTIVATIONS
    OptimizerKind       datp.engine.optimizer.OPTIMIZERS
    ScheduleKind        datp.engine.optimizer.SCHEDULES
    Amp                 datp.engine.inference.AMP_DTYPES
    TestScheme          datp.engine.evaluate.SCHEMES
    LocalizationWeights datp.engine.localize.WEIGHTS
"""

from __future__ import annotations

import re
import typing
from typing import Literal

Format = Literal["ucf101", "hmdb51", "kinetics", "list", "folders"]
Source = Literal["video", "frames", "features"]
FeatureLayout = Literal["auto", "datp", "windows", "video_features"]
"""How a features folder is laid out: datp's own files, ActionFormer / OpenTAD / VideoMAEv2
windows (``.npy`` only), v-iashin/video_features output; auto: told apart by what is there."""
Decoder = Literal["pyav", "torchcodec"]
DecodePlace = Literal["workers", "device", "auto"]
Modality = Literal["rgb", "flow"]
TestCrops = Literal[1, 3, 10]
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small",
                   "mobilenet_v3_large", "efficientnet_b0", "small_cnn"]
PoolingKind = Literal["datp", "average", "max", "attention", "random_gaussians"]
PoolSpace = Literal["probabilities", "logits"]
AuxInput = Literal["scores", "sequence", "conv"]
"""What DATP's auxiliary net (and the attention MLP) reads: the per-segment softmax scores
``[B, N, C]``, a feature sequence ``[B, N, D]`` (in TSN the backbone's pooled features), or the
last conv maps ``[B, N, D, h, w]`` (paper Table 1 compares scores and conv)."""
GeneratorKind = Literal["mog", "discrete"]
DiscreteActivation = Literal["identity", "softplus"]
OptimizerKind = Literal["sgd", "adamw"]
ScheduleKind = Literal["step", "cosine"]
Amp = Literal["none", "bf16", "fp16", "auto"]
"""Mixed precision; auto: bf16 where the device computes it natively (CUDA, a CPU with AMX or
AVX512-BF16), none elsewhere."""
TestScheme = Literal["datp", "p1", "p2", "p3", "tsn"]
"""The paper's test schemes (Table 4)."""
LocalizationWeights = Literal["pooling", "components", "none"]
"""What weak localization multiplies the per-step class probabilities with: the pooling's
temporal weights (a mixture's Gaussians on a dense grid, else its per-step weights), a
mixture's Gaussians at equal height (its rho ignored; other poolings' weights as they are), or
nothing (the per-step scores alone)."""


def names(choice: object) -> tuple:
    """The values of a ``Literal`` type, in the order written (for messages and argparse)."""
    return typing.get_args(choice)


IMAGENET = "imagenet"
"""model.pretrained's name for the backbone's default torchvision ImageNet parameters."""


def is_weights_name(text: str) -> bool:
    """Whether ``model.pretrained`` names torchvision weights ("imagenet",
    "ResNet34_Weights.IMAGENET1K_V1") rather than a file (``ResNet34_Weights.pth`` is a file)."""
    return text == IMAGENET or bool(re.fullmatch(r"\w+_Weights\.(?!pth?$)\w+", text))


# Bounds on the sizes a user sets, far above any published recipe (TSN: 3 to 25 segments, 5 flow
# fields, 224 px crops of 256 px frames, batches of 256): a value beyond them is a typo, and the
# memory it asks for would end in an out-of-memory error or the OOM killer.
MAX_SEGMENTS = 1000
MAX_FLOW_LENGTH = 64
MAX_IMAGE_SIZE = 2048
MAX_SHORT_SIDE = 4096
"""Of frames resized before cropping (data.resize_short) and before flow (datp flow)."""
MAX_BATCH_SIZE = 4096
