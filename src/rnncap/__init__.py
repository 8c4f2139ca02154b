"""rnncap: capacity and trainability of recurrent networks (Collins et al. 2017).

Importing the package loads nothing heavy: the config schemas and resolvers are registered
where configs are composed (``train.py``, ``rnncap generate``, the tests' conftest) by
``rnncap.core.schema.register_configs`` and ``rnncap.core.resolvers.register_resolvers``.
"""

__version__ = "0.1.0"
