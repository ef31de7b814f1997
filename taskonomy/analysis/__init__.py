"""From per-image losses to a taxonomy: win rates and AHP affinities (``affinity``), reading losses and
affinity tables (``tables``), the BIP and the similarity tree (``taxonomy``), and the known-structure
checks of the synthetic bank (``checks``). Pure NumPy / pandas / PuLP: no torch."""
