"""Feature sequences of videos from frozen backbones (``datp features``): backbones, the time
grid, sources, storage and the batched extraction. The files are read by
:mod:`datp.data.features`."""
