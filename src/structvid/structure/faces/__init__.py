"""The face structure of §4: a 3D morphable model (Eq. 1-2), its fitting to real faces, expression transfer and
normal-map rendering. dlib and eos-py are optional (`pip install structvid[faces]`) and imported lazily."""
