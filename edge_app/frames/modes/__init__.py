"""Labeller modes, one per file: ``classify.py``, ``tiles.py``, ... (the contract is in ``base.py``).

A module here defines a :class:`~edge_app.frames.modes.base.Labeller` subclass decorated with
``@register_mode("name")`` and its frozen config dataclass. The registry imports every module of this
package the first time a mode is looked up, so adding a mode is adding a file; nothing else names it.
"""
