"""synthaug.augment."""
