"""platypus: the Platypus recipe (curate -> train -> merge -> evaluate), declarative and Hydra-configured."""

__version__ = "0.1.0"
