"""rnncap: capacity and trainability of recurrent networks (Collins et al. 2017)."""

from rnncap.core.config import register_resolvers

register_resolvers()

__version__ = "0.1.0"
