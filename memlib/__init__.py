"""memlib: helpers for reproducing "Localizing and Mitigating Memorization in Image
Autoregressive Models" (Kasliwal, Boenisch, Dziedzic 2025).

Modules, roughly in data-flow order:

- ``models``     VAR and RAR with their tokenizers (own code, official checkpoint layout)
- ``hooks``      capture module outputs by dotted name inside a ``with`` block
- ``unitmem``    streaming UnitMem accumulator and a dense reference
- ``intervene``  choose fc1 units and scale their incoming weights, restorably
"""

__version__ = "0.1.0"
