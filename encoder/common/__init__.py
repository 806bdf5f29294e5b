"""Neutral ground: the helpers every part of semrec uses and none owns (``semrec.common``).

Safe pickles, atomic writes and strict text reading (:mod:`.io`), linear algebra (:mod:`.linalg`),
typed hyperparameter ranges (:mod:`.hparams`) and the demo dataset (:mod:`.demo`). The encoder,
``generation/`` and ``data/`` import from here; nothing here imports them. Installed as its own
package (``setup.py``); its files sit under ``encoder/`` because the repository's top level is fixed.
"""
