"""structvid: structure-aware image-to-video translation (Zhao et al., IJCV 2020)."""

__version__ = "0.1.0"
