"""tutorial_lib: the library of the course "From Deep Ensembles to Packed-Ensembles"."""

__version__ = "0.1.0"
