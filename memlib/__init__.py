"""memlib: helpers for reproducing "Localizing and Mitigating Memorization in Image
Autoregressive Models" (Kasliwal, Boenisch, Dziedzic 2025).

Modules, roughly in data-flow order:

- ``config``       the run config: every setting, its default and check, one section per concern
- ``data``         the Fashion-MNIST testbed, ImageNet-style folders, augmentations per family
- ``models``       VAR and RAR with their tokenizers (own code, official checkpoint layout), the testbed configs
- ``train``        trains the testbed tokenizers and generators
- ``hooks``        capture module outputs by dotted name inside a ``with`` block
- ``unitmem``      streaming UnitMem accumulator and a dense reference
- ``collect``      UnitMem over a dataset for any generator
- ``intervene``    choose fc1 units and scale their incoming weights, restorably
- ``similarity``   copy-detection similarity (SSCD file, testbed pixel measure), threshold calibration
- ``extract``      the extraction attack (score, candidates, prefix generation, decision)
- ``classifier``   the testbed FID feature extractor
- ``fid``          FID with an explicit feature extractor (Inception file or testbed classifier)
- ``sweep``        the intervention sweep (k%, modes, seeds) -> one results table
- ``results``      hashing, atomic result files with their parameters; the content-addressed cache
- ``distributed``  torchrun helpers: sharding by rank and exact merges
- ``stages``       the pipeline: the run, its training images, the unitmem/attack/sweep/fid stages
- ``summaries``    the analysis the book's pages report
- ``cli``          ``python -m memlib unitmem|attack|sweep|fid|train``

memlib/README.md draws the data flow and says where a new setting, stage or page goes.
"""

__version__ = "0.1.0"
