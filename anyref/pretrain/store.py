"""The ingredient weight store now lives in `anyref.weights`, below the model; its names stay importable here."""
from ..weights import (CONFIG_FILE, WEIGHTS_FILE, check_writable, fresh_folder, ingredient_dir, load_weights,
                       read_config, save_ingredient)

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "check_writable", "fresh_folder", "ingredient_dir", "load_weights",
           "read_config", "save_ingredient"]
