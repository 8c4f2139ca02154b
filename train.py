"""Train one recurrent network (or a sweep with -m): ``python train.py cell=gru depth=8``."""

import sys

import hydra
from omegaconf import DictConfig

from rnncap.core.config import ConfigError
from rnncap.core.quiet import quiet_libraries
from rnncap.core.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    try:
        return train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
