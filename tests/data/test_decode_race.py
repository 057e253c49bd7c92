"""The CUDA decode race (issue 29): decoding never writes memory that kernels already queued still
read. The reproduction of pytorch/vision PR #9606 (benchmarks/decode_race.py), 200 iterations of
about 100 ms of queued work each, on baseline JPEGs (nvJPEG's hardware engine) and progressive ones
(its software path). Before the fix datp called torchvision's ``decode_jpeg`` as the
``torchvision`` path of the benchmark still does, which corrupts (134 of 200 iterations on an
H100 in the threads); the same test run on that call fails."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("kind", ["baseline", "progressive"])
@pytest.mark.parametrize("path", ["datp", "ahead"])
def test_decoding_never_writes_memory_that_queued_kernels_still_read(path, kind):
    from benchmarks.decode_race import IMAGES, corruptions, jpeg_files

    files = jpeg_files(IMAGES, progressive=kind == "progressive")
    # The old call first: where it never corrupts, 0 corruptions of ours would prove nothing.
    before, _ = corruptions("torchvision", files, iterations=50, work_ms=100)
    if before == 0:
        pytest.skip("torchvision's call did not corrupt in 50 iterations on this GPU: the race "
                    "does not show here, so this check cannot fail")
    corrupted, handed = corruptions(path, files, iterations=200, work_ms=100)
    assert corrupted == 0, (f"{corrupted}/200 corrupted through {path} (freed block handed in "
                            f"{handed}); torchvision's call: {before}/50")
