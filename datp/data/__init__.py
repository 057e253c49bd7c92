"""Video data: sources (video files, frame and flow folders), official splits, TSN sampling,
transforms, the dataset, the synthetic benchmark and the dataset checker.

Heavy or optional libraries (PyAV, OpenCV) are imported by the modules that need them.
"""
