"""Train one recurrent network (or a sweep with -m): ``python train.py cell=gru depth=8``."""

import hydra
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError
from rnncap.core.command_line import fail, one_line_errors
from rnncap.core.quiet import quiet_libraries
from rnncap.core.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    try:
        return train(cfg)
    except ConfigError as err:  # exit here: a refused run also ends a sweep
        fail(str(err))


if __name__ == "__main__":
    with one_line_errors():
        main()
