"""edgeship.core: what the workstation commands share and the device does not need.

Run layout and the one-writer lock, typed result records and their JSON schemas, tables and plots, the
TensorFlow environment and the TensorFlow predictor, split manifests and dataset scanning. It imports
`edgeship.runtime` and nothing else of edgeship; `train`, `export` and `bench` import it.
"""
