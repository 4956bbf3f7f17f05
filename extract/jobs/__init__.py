"""Extraction jobs: a whole image collection -> one feature store (`run_extraction`), sharded and under
torchrun, Hugging Face `datasets` in and out, and the `lxmert-extract` command (`cli`). The top of
extract: it imports the extractor, the checkpoints (to name the weights) and the store; nothing in
extract imports it. `python -m extract.jobs` (torchrun's form) runs the command line.

Its names are exported by `extract` itself; this package file stays empty of imports so that the
command line's `--help` starts without loading torch.
"""
