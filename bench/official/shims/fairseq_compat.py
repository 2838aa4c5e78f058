"""Run a 2021 fairseq entry point on Debian 12 (Python 3.11, NumPy 1.24, omegaconf 2.2).

    python3 fairseq_compat.py fairseq_cli.train ARGS...

Three incompatibilities, each patched without changing what fairseq computes:
- Python 3.11 rejects unhashable dataclass instances as field defaults; fairseq's configs
  use them. Such a default's class is given object.__hash__ before the check.
- NumPy 1.24 removed np.float / np.int / ... aliases; they are restored to the same types.
- omegaconf 2.2 dropped the function fairseq patches to store argparse Namespaces in a
  DictConfig (is_primitive_type); objects are allowed by a config flag instead.
"""
import dataclasses
import inspect
import os
import runpy
import sys

_get_field = dataclasses._get_field


def _hashable_default(cls, name, typ, *rest):
    d = cls.__dict__.get(name, dataclasses.MISSING)
    if isinstance(d, dataclasses.Field):
        d = d.default
    if dataclasses.is_dataclass(d) and not isinstance(d, type) and type(d).__hash__ is None:
        type(d).__hash__ = object.__hash__
    return _get_field(cls, name, typ, *rest)


dataclasses._get_field = _hashable_default

import numpy as np  # noqa: E402

np.float, np.int, np.bool, np.object, np.long = float, int, bool, object, int

from omegaconf import OmegaConf  # noqa: E402
from omegaconf import _utils as _omegaconf_utils  # noqa: E402

# fairseq swaps _utils.is_primitive_type for "always primitive" around the places where it
# stores argparse Namespaces in a config; omegaconf 2.2 has no such function (the check is
# the allow_objects flag), so the name is provided and every config allows objects.
_omegaconf_utils.is_primitive_type = _omegaconf_utils.is_primitive_type_annotation
_create = OmegaConf.create
_no_object = inspect.signature(_create).parameters["obj"].default


def _create_allowing_objects(obj=_no_object, parent=None, flags=None):
    return _create(obj, parent, {"allow_objects": True, **(flags or {})})


OmegaConf.create = staticmethod(_create_allowing_objects)

# THOR_FIXED_EXPERT=K (bench/official/import.sh): the official THOR layers' random expert
# draws (torch.randint in transformer_thor_layer.py, at inference a mask over all experts)
# return K, so its model decodes with one fixed expert; every other caller is untouched.
if os.environ.get("THOR_FIXED_EXPERT") is not None:
    import torch

    _randint = torch.randint
    _fixed = int(os.environ["THOR_FIXED_EXPERT"])

    def _randint_fixed_in_thor_layers(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename.endswith("transformer_thor_layer.py"):
            size = kwargs.get("size", args[2] if len(args) > 2 else None)
            return torch.full(tuple(size), _fixed, dtype=torch.long, device=kwargs.get("device"))
        return _randint(*args, **kwargs)

    torch.randint = _randint_fixed_in_thor_layers

module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
runpy.run_module(module, run_name="__main__")
