"""datp: Deep Adaptive Temporal Pooling for video activity recognition.

The paper's module lives in :mod:`datp.pooling`; the two-stream TSN framework around it in
:mod:`datp.models`, :mod:`datp.data` and :mod:`datp.flow`.
"""

__version__ = "0.1.0"
