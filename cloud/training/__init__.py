"""Training datasets and models for the edge (issue #12).

`dataset` and `fleet` need numpy only; `model` (and everything importing it)
needs TensorFlow from the `train` extra. The cloud server never imports this
package: an import-linter contract in pyproject.toml keeps it that way, and
the CLI imports it only inside the commands that train.
"""
