"""The demo pools: offline corpora, training, and the pools built from them."""
