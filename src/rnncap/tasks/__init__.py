"""Tasks of Collins et al. 2017: each a LightningDataModule with its loss and metrics."""
