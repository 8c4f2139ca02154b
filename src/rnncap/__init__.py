"""rnncap: capacity and trainability of recurrent networks (Collins et al. 2017)."""

from rnncap.core.resolvers import register_resolvers
from rnncap.core.schema import register_configs

register_resolvers()
register_configs()

__version__ = "0.1.0"
