"""Train one recurrent network (or a sweep with -m): ``python train.py cell=gru depth=8``."""

import hydra
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError
from rnncap.core.command_line import one_line_errors, refuse
from rnncap.core.quiet import quiet_libraries
from rnncap.core.resolvers import register_resolvers
from rnncap.core.run import train
from rnncap.core.schema import register_configs

register_resolvers()  # before Hydra composes: the schemas and ${scaled:...} of conf/
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    try:
        return train(cfg)
    except ConfigError as err:  # exit 2, or skip the point of a plain -m grid
        refuse(str(err))
        return None


if __name__ == "__main__":
    with one_line_errors():
        main()
