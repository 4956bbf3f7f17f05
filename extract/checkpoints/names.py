"""The file names of our detector checkpoint folder (config.yaml + model.safetensors): no torch, so that the
command line's --help can name them at once."""

CONFIG_NAME = "config.yaml"
SAFETENSORS_NAME = "model.safetensors"
