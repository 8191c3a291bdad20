"""``cupyx.scipy`` for the NumPy-backed CuPy stand-in (see ``tests/cupy_stand_in/cupy``)."""
