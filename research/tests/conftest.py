"""The lab's tests: research/ modules import by name (as when run as `python research/NAME.py`), and the product
tests' fixtures (a micro model, a few samples) are shared rather than copied."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "research"))
_spec = importlib.util.spec_from_file_location("product_conftest", ROOT / "tests" / "conftest.py")
_product = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_product)
micro_model, samples = _product.micro_model, _product.samples
